namespace Bert4Sharp.Tokenization;

using System.Buffers.Binary;
using System.Text;
using Bert4Sharp.Checkpoints.TensorFlow;

/// <summary>
/// SentencePiece's BPE segmentation (bpe_model.cc): start from characters (user-defined pieces matched
/// first), repeatedly merge the adjacent pair whose merged piece has the highest score, ties to the
/// leftmost pair. Microsoft.ML.Tokenizers 2.0 breaks equal-score ties differently ("4000" → "40"+"00"
/// instead of "4"+"000"), so Bert4Sharp segments BPE models itself.
/// </summary>
internal sealed class SentencePieceBpe
{
    readonly Dictionary<string, (int Id, float Score)> mergeable = new(StringComparer.Ordinal);
    readonly Dictionary<string, int> all = new(StringComparer.Ordinal);
    readonly List<string> userDefined = [];
    readonly int unknownId;

    SentencePieceBpe(int unknownId) => this.unknownId = unknownId;

    /// <summary>Returns the BPE segmenter when the model is BPE, else null.</summary>
    public static SentencePieceBpe? FromModel(byte[] model, string name)
    {
        Func<string, Exception> err = m => new InvalidDataException($"{name}: {m}");
        var r = new ProtoReader(model, err);
        var pieces = new List<(string Piece, float Score, int Type)>();
        int modelType = 1;
        while (!r.End)
        {
            var (f, w) = r.Tag();
            if (f == 1 && w == 2)
            {
                var p = new ProtoReader(r.Bytes(), err);
                string piece = "";
                float score = 0;
                int type = 1;
                while (!p.End)
                {
                    var (pf, pw) = p.Tag();
                    if (pf == 1 && pw == 2) piece = Encoding.UTF8.GetString(p.Bytes());
                    else if (pf == 2 && pw == 5) score = BitConverter.UInt32BitsToSingle(p.Fixed32());
                    else if (pf == 3 && pw == 0) type = (int)p.Varint();
                    else p.Skip(pw);
                }
                pieces.Add((piece, score, type));
            }
            else if (f == 2 && w == 2)
            {
                var t = new ProtoReader(r.Bytes(), err);
                while (!t.End)
                {
                    var (tf, tw) = t.Tag();
                    if (tf == 3 && tw == 0) modelType = (int)t.Varint(); else t.Skip(tw);
                }
            }
            else r.Skip(w);
        }
        if (modelType != 2) return null;
        int unk = pieces.FindIndex(p => p.Type == 2);
        var bpe = new SentencePieceBpe(unk < 0 ? 0 : unk);
        for (int i = 0; i < pieces.Count; i++)
        {
            var (piece, score, type) = pieces[i];
            bpe.all.TryAdd(piece, i);
            // NORMAL(1), USER_DEFINED(4) and UNUSED(5) take part in merges; CONTROL, UNKNOWN, BYTE do not.
            if (type is 1 or 4 or 5) bpe.mergeable.TryAdd(piece, (i, score));
            if (type == 4) bpe.userDefined.Add(piece);
        }
        bpe.userDefined.Sort((a, b) => b.Length.CompareTo(a.Length));
        return bpe;
    }

    sealed class PairComparer : IComparer<(float Score, int Left)>
    {
        public static readonly PairComparer Instance = new();
        // PriorityQueue dequeues the smallest: order by score descending, then left ascending.
        public int Compare((float Score, int Left) a, (float Score, int Left) b) =>
            a.Score != b.Score ? b.Score.CompareTo(a.Score) : a.Left.CompareTo(b.Left);
    }

    /// <summary>Ids of the normalised text.</summary>
    public List<int> Encode(string normalized)
    {
        // Symbols as a doubly linked list over substrings.
        var text = new List<string>();
        for (int i = 0; i < normalized.Length;)
        {
            string? user = userDefined.FirstOrDefault(u => string.CompareOrdinal(normalized, i, u, 0, u.Length) == 0);
            int n = user?.Length ?? (char.IsHighSurrogate(normalized[i]) && i + 1 < normalized.Length ? 2 : 1);
            text.Add(normalized.Substring(i, n));
            i += n;
        }
        int count = text.Count;
        var prev = new int[count];
        var next = new int[count];
        for (int i = 0; i < count; i++) { prev[i] = i - 1; next[i] = i + 1 < count ? i + 1 : -1; }
        var agenda = new PriorityQueue<(int Left, int Right, string Merged), (float, int)>(PairComparer.Instance);
        void Add(int left, int right)
        {
            if (left < 0 || right < 0) return;
            string merged = text[left] + text[right];
            if (mergeable.TryGetValue(merged, out var m)) agenda.Enqueue((left, right, merged), (m.Score, left));
        }
        for (int i = 0; i + 1 < count; i++) Add(i, i + 1);
        while (agenda.TryDequeue(out var top, out _))
        {
            // Skip pairs made stale by an earlier merge.
            if (text[top.Left].Length == 0 || text[top.Right].Length == 0 || next[top.Left] != top.Right || text[top.Left] + text[top.Right] != top.Merged) continue;
            text[top.Left] = top.Merged;
            text[top.Right] = "";
            next[top.Left] = next[top.Right];
            if (next[top.Right] >= 0) prev[next[top.Right]] = top.Left;
            Add(prev[top.Left], top.Left);
            Add(top.Left, next[top.Left]);
        }
        var ids = new List<int>();
        for (int i = 0; i >= 0 && i < count; i = next[i])
            ids.Add(all.TryGetValue(text[i], out int id) ? id : unknownId);
        return ids;
    }
}
