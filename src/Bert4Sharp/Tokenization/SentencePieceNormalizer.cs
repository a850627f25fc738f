namespace Bert4Sharp.Tokenization;

using System.Buffers.Binary;
using System.Text;
using Bert4Sharp.Checkpoints.TensorFlow;

/// <summary>
/// SentencePiece's text normaliser, read from the model's <c>NormalizerSpec</c>: the precompiled
/// character map (a darts-clone double-array trie over UTF-8 plus a blob of replacement strings,
/// e.g. <c>nmt_nfkc</c>: full-width → ASCII, compatibility forms → canonical), removal of extra
/// whitespace, the dummy "▁" prefix and whitespace escaping. Microsoft.ML.Tokenizers 2.0 skips the
/// character map for BPE models, so Bert4Sharp applies it itself.
/// </summary>
internal sealed class SentencePieceNormalizer
{
    readonly uint[] trie;
    readonly byte[] normalized;
    readonly bool addDummyPrefix, removeExtraWhitespace, escapeWhitespace;

    SentencePieceNormalizer(uint[] trie, byte[] normalized, bool addDummyPrefix, bool removeExtraWhitespace, bool escapeWhitespace)
    {
        this.trie = trie;
        this.normalized = normalized;
        this.addDummyPrefix = addDummyPrefix;
        this.removeExtraWhitespace = removeExtraWhitespace;
        this.escapeWhitespace = escapeWhitespace;
    }

    /// <summary>The normaliser of a serialised ModelProto (field 3, NormalizerSpec).</summary>
    public static SentencePieceNormalizer FromModel(byte[] model, string name)
    {
        Func<string, Exception> err = m => new InvalidDataException($"{name}: {m}");
        var r = new ProtoReader(model, err);
        byte[]? spec = null;
        while (!r.End)
        {
            var (f, w) = r.Tag();
            if (f == 3 && w == 2) spec = r.Bytes().ToArray(); else r.Skip(w);
        }
        byte[] charsmap = [];
        bool dummy = true, extra = true, escape = true;
        if (spec is not null)
        {
            var s = new ProtoReader(spec, err);
            while (!s.End)
            {
                var (f, w) = s.Tag();
                switch (f, w)
                {
                    case (2, 2): charsmap = s.Bytes().ToArray(); break;
                    case (3, 0): dummy = s.Varint() != 0; break;
                    case (4, 0): extra = s.Varint() != 0; break;
                    case (5, 0): escape = s.Varint() != 0; break;
                    default: s.Skip(w); break;
                }
            }
        }
        uint[] trie = [];
        byte[] blob = [];
        if (charsmap.Length > 0)
        {
            if (charsmap.Length < 4) throw err("precompiled_charsmap is truncated");
            uint trieSize = BinaryPrimitives.ReadUInt32LittleEndian(charsmap);
            if (trieSize % 4 != 0 || trieSize > charsmap.Length - 4) throw err($"precompiled_charsmap trie size {trieSize} does not fit its {charsmap.Length} bytes");
            trie = new uint[trieSize / 4];
            for (int i = 0; i < trie.Length; i++) trie[i] = BinaryPrimitives.ReadUInt32LittleEndian(charsmap.AsSpan(4 + 4 * i));
            blob = charsmap.AsSpan(4 + (int)trieSize).ToArray();
        }
        return new SentencePieceNormalizer(trie, blob, dummy, extra, escape);
    }

    /// <summary>Normalises <paramref name="text"/> exactly as SentencePiece does before segmenting.</summary>
    public string Normalize(string text)
    {
        byte[] input = Encoding.UTF8.GetBytes(text);
        var output = new List<byte>(input.Length + 8);
        int pos = 0;
        if (removeExtraWhitespace)
        {
            // Skip leading whitespace (after normalisation).
            while (pos < input.Length)
            {
                var (piece, len) = NormalizePrefix(input, pos);
                if (!(piece.Length == 1 && piece[0] == (byte)' ')) break;
                pos += len;
            }
        }
        if (pos >= input.Length) return "";
        byte[] space = escapeWhitespace ? "\u2581"u8.ToArray() : [(byte)' '];
        if (addDummyPrefix) output.AddRange(space);
        // As normalizer.cc: leading spaces of a piece are dropped while the previous piece ended with one.
        bool prevSpace = removeExtraWhitespace;
        while (pos < input.Length)
        {
            var (piece, len) = NormalizePrefix(input, pos);
            pos += len;
            int k = 0;
            if (prevSpace) while (k < piece.Length && piece[k] == (byte)' ') k++;
            if (k == piece.Length) continue;
            for (; k < piece.Length; k++)
            {
                if (escapeWhitespace && piece[k] == (byte)' ') output.AddRange(space);
                else output.Add(piece[k]);
            }
            prevSpace = piece[^1] == (byte)' ';
        }
        if (removeExtraWhitespace)
        {
            // Drop trailing whitespace.
            while (output.Count >= space.Length && output.Skip(output.Count - space.Length).SequenceEqual(space))
                output.RemoveRange(output.Count - space.Length, space.Length);
        }
        return Encoding.UTF8.GetString([.. output]);
    }

    /// <summary>The replacement for the longest mapped prefix at <paramref name="pos"/>, or the next UTF-8 character unchanged.</summary>
    (byte[] Piece, int Length) NormalizePrefix(byte[] input, int pos)
    {
        int bestLen = 0;
        uint bestValue = 0;
        if (trie.Length > 0)
        {
            // darts-clone common-prefix search.
            uint nodePos = 0;
            uint unit = trie[0];
            nodePos ^= Offset(unit);
            for (int i = pos; i < input.Length; i++)
            {
                byte c = input[i];
                if (c == 0) break;
                nodePos ^= c;
                if (nodePos >= trie.Length) break;
                unit = trie[nodePos];
                if (Label(unit) != c) break;
                nodePos ^= Offset(unit);
                if (HasLeaf(unit))
                {
                    if (nodePos >= trie.Length) break;
                    bestLen = i - pos + 1;
                    bestValue = trie[nodePos] & 0x7fffffffu;
                }
            }
        }
        if (bestLen > 0 && bestValue < normalized.Length)
        {
            int end = Array.IndexOf(normalized, (byte)0, (int)bestValue);
            if (end < 0) end = normalized.Length;
            return (normalized.AsSpan((int)bestValue, end - (int)bestValue).ToArray(), bestLen);
        }
        int n = Utf8Length(input[pos]);
        if (pos + n > input.Length) n = input.Length - pos;
        return (input.AsSpan(pos, n).ToArray(), n);
    }

    static int Utf8Length(byte b) => b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    static uint Offset(uint unit) => (unit >> 10) << (int)((unit & (1u << 9)) >> 6);
    static uint Label(uint unit) => unit & (0x80000000u | 0xffu);
    static bool HasLeaf(uint unit) => ((unit >> 8) & 1) == 1;
}
