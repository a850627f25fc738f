namespace Bert4Sharp.Bench;

using System.Diagnostics;
using Bert4Sharp.Checkpoints;
using TorchSharp;

/// <summary>
/// Loading a BERT-base-shaped safetensors file (about 420 MB of float32) into TorchSharp tensors,
/// against a plain sequential read of the same file in the same run. Target: at most 1.3×.
/// Both run with the file in the page cache (each is preceded by a warm-up pass), alternating, and the
/// medians are compared, so neither side benefits from the other's caching.
/// </summary>
public static class CheckpointLoadBench
{
    public static int Run(string[] args)
    {
        int rounds = 7;
        bool keep = false;
        string? file = null;
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--rounds") rounds = int.Parse(args[++i]);
            else if (args[i] == "--keep") keep = true;
            else if (args[i] == "--file") file = args[++i];
        }
        file ??= Path.Combine(Path.GetTempPath(), "b4s-bench-bert-base.safetensors");
        if (!File.Exists(file)) Generate(file);
        long size = new FileInfo(file).Length;
        Console.WriteLine($"file: {file} ({size / 1e6:F1} MB), torch threads {torch.get_num_threads()}, rounds {rounds}");

        SequentialRead(file);   // warm the page cache
        // Memory first, before any other measurement leaves buffers behind: loading must cost one copy
        // of the tensors, not two.
        GC.Collect();
        long rss0 = Environment.WorkingSet;
        using (var ck = Checkpoint.Open(file))
        {
            var held = ck.Entries.Select(e => ck.ReadTensor(e)).ToList();
            long rss1 = Environment.WorkingSet;
            Console.WriteLine($"resident memory added by loading every tensor: {(rss1 - rss0) / 1e6:F0} MB for a {size / 1e6:F0} MB file ({(double)(rss1 - rss0) / size:F2}x)");
            foreach (var t in held) t.Dispose();
        }
        LoadAll(file);
        var read = new List<double>();
        var readAll = new List<double>();
        var load = new List<double>();
        var mapped = new List<double>();
        for (int r = 0; r < rounds; r++)
        {
            read.Add(SequentialRead(file));
            readAll.Add(ReadAllBytes(file));
            load.Add(LoadAll(file, memoryMap: false));
            mapped.Add(LoadAll(file, memoryMap: true));
        }
        double mMapped = Measure.Median(mapped);
        double mRead = Measure.Median(read), mAll = Measure.Median(readAll), mLoad = Measure.Median(load);
        Console.WriteLine($"peer: File.ReadAllBytes (whole file into new memory) : median {mAll * 1e3,8:F1} ms  ({size / mAll / 1e9:F2} GB/s)");
        Console.WriteLine($"floor: stream through a reused 1 MiB buffer          : median {mRead * 1e3,8:F1} ms  ({size / mRead / 1e9:F2} GB/s)");
        Console.WriteLine($"Bert4Sharp: Checkpoint.Open + ReadTensor (all)       : median {mLoad * 1e3,8:F1} ms  ({size / mLoad / 1e9:F2} GB/s)");
        Console.WriteLine($"Bert4Sharp: Checkpoint.OpenMapped + ReadTensor (all) : median {mMapped * 1e3,8:F1} ms  ({size / mMapped / 1e9:F2} GB/s)");
        Console.WriteLine($"ratio load / plain sequential read (ReadAllBytes)    : {mLoad / mAll:F2}x   (target <= 1.30x)");
        Console.WriteLine($"ratio mapped load / plain sequential read            : {mMapped / mAll:F2}x");
        Console.WriteLine($"ratio load / reused-buffer floor (no new memory)     : {mLoad / mRead:F2}x   (information: page-cache copy only)");
        if (!keep) File.Delete(file);
        return 0;
    }

    static double SequentialRead(string file)
    {
        var buffer = new byte[1 << 20];
        var sw = Stopwatch.StartNew();
        using var fs = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
        long total = 0;
        int n;
        while ((n = fs.Read(buffer, 0, buffer.Length)) > 0) total += n;
        return sw.Elapsed.TotalSeconds;
    }

    static double ReadAllBytes(string file)
    {
        var sw = Stopwatch.StartNew();
        byte[] all = File.ReadAllBytes(file);
        double t = sw.Elapsed.TotalSeconds;
        GC.KeepAlive(all);
        return t;
    }

    static double LoadAll(string file, bool memoryMap = false)
    {
        var sw = Stopwatch.StartNew();
        using var ck = memoryMap ? Checkpoint.OpenMapped(file) : Checkpoint.Open(file);
        var tensors = new List<torch.Tensor>(ck.Entries.Count);
        foreach (var e in ck.Entries) tensors.Add(ck.ReadTensor(e));
        double t = sw.Elapsed.TotalSeconds;
        foreach (var x in tensors) x.Dispose();
        return t;
    }

    /// <summary>BERT-base (Chinese vocabulary) parameter shapes with the Hugging Face names.</summary>
    public static IEnumerable<(string Name, long[] Shape)> BertBaseShapes()
    {
        const int h = 768, ff = 3072, vocab = 21128;
        yield return ("bert.embeddings.word_embeddings.weight", [vocab, h]);
        yield return ("bert.embeddings.position_embeddings.weight", [512, h]);
        yield return ("bert.embeddings.token_type_embeddings.weight", [2, h]);
        yield return ("bert.embeddings.LayerNorm.weight", [h]);
        yield return ("bert.embeddings.LayerNorm.bias", [h]);
        for (int l = 0; l < 12; l++)
        {
            string p = $"bert.encoder.layer.{l}.";
            foreach (var m in new[] { "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense" })
            {
                yield return (p + m + ".weight", [h, h]);
                yield return (p + m + ".bias", [h]);
            }
            yield return (p + "attention.output.LayerNorm.weight", [h]);
            yield return (p + "attention.output.LayerNorm.bias", [h]);
            yield return (p + "intermediate.dense.weight", [ff, h]);
            yield return (p + "intermediate.dense.bias", [ff]);
            yield return (p + "output.dense.weight", [h, ff]);
            yield return (p + "output.dense.bias", [h]);
            yield return (p + "output.LayerNorm.weight", [h]);
            yield return (p + "output.LayerNorm.bias", [h]);
        }
        yield return ("bert.pooler.dense.weight", [h, h]);
        yield return ("bert.pooler.dense.bias", [h]);
        yield return ("cls.predictions.transform.dense.weight", [h, h]);
        yield return ("cls.predictions.transform.dense.bias", [h]);
        yield return ("cls.predictions.transform.LayerNorm.weight", [h]);
        yield return ("cls.predictions.transform.LayerNorm.bias", [h]);
        yield return ("cls.predictions.bias", [vocab]);
    }

    static void Generate(string file)
    {
        Console.WriteLine($"generating {file} …");
        var rng = new Random(42);
        var sources = BertBaseShapes().Select(s => new TensorSource(s.Name, TensorDType.F32, s.Shape, span =>
        {
            var floats = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(span);
            for (int i = 0; i < floats.Length; i++) floats[i] = (float)(rng.NextDouble() * 0.04 - 0.02);
        }));
        SafetensorsWriter.Write(file, sources);
    }
}
