namespace Bert4Sharp.Tests.Distributed;

using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using Bert4Sharp.Checkpoints;
using Bert4Sharp.Training.Distributed;

/// <summary>
/// b4s under Open MPI's mpirun (Debian's openmpi-bin; .ci/run installs it): two ranks with half the batch each train
/// exactly as one process with the whole batch, resume with the same count, and a rank that dies or hangs ends the job
/// with an error instead of a hang. Without mpirun or libmpi these skip with the reason; the errors a missing
/// library gives are tested anyway.
/// </summary>
[Collection("serial")]
public sealed partial class MpiTrainingTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("b4s-mpi").FullName;

    public void Dispose()
    {
        try { Directory.Delete(dir, true); } catch (IOException) { }
    }

    static string? FindMpirun() => (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':')
        .Select(d => Path.Combine(d, "mpirun")).FirstOrDefault(File.Exists);

    /// <summary>mpirun's path; skips when Open MPI's launcher or library is absent.</summary>
    static string MpirunOrSkip()
    {
        string? mpirun = FindMpirun();
        if (mpirun is null) Assert.Skip("needs Open MPI's mpirun on PATH (Debian: apt-get install openmpi-bin; .ci/run installs it as root)");
        if (MpiLibrary.TryLoad(out string? error) is null) Assert.Skip($"needs Open MPI's library: {error}");
        return mpirun;
    }

    static string Dotnet => (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d, "dotnet")).FirstOrDefault(File.Exists) ?? "dotnet";

    /// <summary>
    /// Starts <c>mpirun -np N b4s …</c> (as root mpirun needs --allow-run-as-root; --oversubscribe lets 2 ranks run on fewer
    /// cores), one libtorch thread per rank.
    /// </summary>
    static Process StartMpirun(string mpirun, int ranks, IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        var psi = new ProcessStartInfo(mpirun) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "-np", ranks.ToString(), "--allow-run-as-root", "--oversubscribe", "-x", "OMP_NUM_THREADS=1" }) psi.ArgumentList.Add(a);
        foreach (var (k, v) in environment ?? new Dictionary<string, string>()) { psi.ArgumentList.Add("-x"); psi.ArgumentList.Add($"{k}={v}"); }
        psi.ArgumentList.Add(Dotnet);
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "b4s.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        return Process.Start(psi)!;
    }

    static (int Code, string Out, string Err) Mpirun(string mpirun, int ranks, params string[] args)
    {
        using var p = StartMpirun(mpirun, ranks, null, args);
        return Finish(p, 300_000, "mpirun " + string.Join(' ', args));
    }

    static (int Code, string Out, string Err) Finish(Process p, int milliseconds, string what)
    {
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(milliseconds)) { p.Kill(true); throw new TimeoutException($"{what} still running after {milliseconds / 1000} s"); }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>A tiny classification task: 80 training examples (10 batches of 8), 16 dev, three labels each drawn from its own characters.</summary>
    string WriteTask(string name, int epochs)
    {
        string vocab = Path.Combine(dir, "vocab.txt");
        if (!File.Exists(vocab))
        {
            TestPaths.WriteSyntheticVocabulary(vocab);
            var rng = new Random(1);
            string Example()
            {
                int label = rng.Next(3);
                var text = new string(Enumerable.Range(0, rng.Next(4, 13)).Select(_ => (char)(0x4E00 + 300 * label + rng.Next(200))).ToArray());
                return JsonSerializer.Serialize(new { sentence = text, label = "abc"[label].ToString() });
            }
            File.WriteAllLines(Path.Combine(dir, "train.json"), Enumerable.Range(0, 80).Select(_ => Example()));
            File.WriteAllLines(Path.Combine(dir, "dev.json"), Enumerable.Range(0, 16).Select(_ => Example()));
        }
        string recipe = Path.Combine(dir, name + ".json");
        // Dropout off (the head's follows hidden_dropout_prob) so that the runs are deterministic.
        File.WriteAllText(recipe, $$"""
            { "task": "classification", "family": "roformer_v2", "vocab": "vocab.txt",
              "config": { "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64, "hidden_act": "relu",
                          "hidden_dropout_prob": 0, "attention_probs_dropout_prob": 0 },
              "train": { "file": "train.json" }, "dev": { "file": "dev.json" }, "max_length": 16, "batch_size": 8, "epochs": {{epochs}},
              "log_every": 1, "optimizer": { "learning_rate": 1e-3 }, "output": "{{name}}" }
            """);
        return recipe;
    }

    static double[] Losses(string output) => File.ReadLines(Path.Combine(output, "metrics.jsonl"))
        .Select(l => JsonDocument.Parse(l).RootElement).Where(e => e.TryGetProperty("loss", out _)).Select(e => e.GetProperty("loss").GetDouble()).ToArray();

    [Fact]
    public void Two_ranks_with_half_batches_train_as_one_process_with_the_whole_batch_and_resume()
    {
        string mpirun = MpirunOrSkip();
        var ct = TestContext.Current.CancellationToken;
        // One process, batch 8, two epochs (20 steps).
        var (code, _, err) = CliTests.B4sWith(new Dictionary<string, string> { ["OMP_NUM_THREADS"] = "1" }, "train", WriteTask("one", epochs: 2));
        Assert.True(code == 0, err);
        // Two ranks with 4 examples each: the first epoch (10 steps), then a resume with the same count for the second.
        string two = WriteTask("two", epochs: 2);
        (code, var stdout, err) = Mpirun(mpirun, 2, "train", two, "--epochs", "1");
        Assert.True(code == 0, stdout + err);
        Assert.Contains("rank 0 of 2", stdout);
        Assert.Single(stdout.Split('\n'), l => l.StartsWith("completed all epochs", StringComparison.Ordinal));   // only rank 0 prints
        var first = Losses(Path.Combine(dir, "two"));
        var expected = Losses(Path.Combine(dir, "one"));
        Assert.Equal(20, expected.Length);
        Close.Assert(first, expected[..10], "losses of steps 1-10: 2 ranks × 4 vs 1 × 8", atol: 1e-6, rtol: 1e-6);
        (code, stdout, err) = Mpirun(mpirun, 2, "train", two, "--resume");
        Assert.True(code == 0, stdout + err);
        Assert.Contains("resuming from", stdout);
        Close.Assert(Losses(Path.Combine(dir, "two")), expected, "losses of steps 1-20 across the resume", atol: 1e-6, rtol: 1e-6);
        using var a = Checkpoint.Open(Path.Combine(dir, "one", "checkpoint.safetensors"));
        using var b = Checkpoint.Open(Path.Combine(dir, "two", "checkpoint.safetensors"));
        Assert.Equal(("1", "2"), (a.Metadata["world_size"], b.Metadata["world_size"]));
        Assert.Equal("20", b.Metadata["step"]);
        int compared = 0;
        foreach (var e in a.Entries.Where(e => e.Name.StartsWith("model/", StringComparison.Ordinal)))
        {
            using var want = a.ReadTensor(e);
            using var got = b.ReadTensor(e.Name);
            Close.Assert(got, want, $"{e.Name} after 20 steps: 2 ranks vs 1", atol: 1e-6, rtol: 1e-6);
            compared++;
        }
        Assert.True(compared > 10, $"only {compared} model tensors compared");
        // A resume on another number of processes is refused with both counts.
        (code, _, err) = CliTests.B4sWith(new Dictionary<string, string> { ["OMP_NUM_THREADS"] = "1" }, "train", two, "--resume", "--epochs", "3");
        Assert.Equal(1, code);
        Assert.Contains("written by a run of 2 processes but this run has 1 process: resume with the same count (mpirun -np 2)", err);
        ct.ThrowIfCancellationRequested();
    }

    [Fact]
    public void Doctor_reports_the_library_and_the_world_under_mpirun()
    {
        string mpirun = MpirunOrSkip();
        var (code, stdout, err) = Mpirun(mpirun, 2, "doctor", "--json");
        Assert.True(code == 0, stdout + err);
        // One report, rank 0's (after the terminal codes .NET writes to the pseudo-terminal mpirun gives a rank's output).
        var mpi = JsonDocument.Parse(stdout[stdout.IndexOf('{')..]).RootElement.GetProperty("mpi");
        Assert.Equal(2, mpi.GetProperty("world_size").GetInt32());
        Assert.Equal("ok", mpi.GetProperty("all_reduce_check").GetString());
        Assert.Contains("Open MPI", mpi.GetProperty("version").GetString());
        Assert.True(File.Exists(mpi.GetProperty("library").GetString()));
    }

    [Fact]
    public void Without_a_usable_library_a_launched_run_says_what_to_install()
    {
        // As if started by mpirun, but the library named is not there: a clear error before any training, no crash.
        string recipe = WriteTask("nolib", epochs: 1);
        var env = new Dictionary<string, string> { ["OMPI_COMM_WORLD_SIZE"] = "2", [MpiLibrary.LibraryVariable] = "/nonexistent/libmpi.so" };
        var (code, _, err) = CliTests.B4sWith(env, "train", recipe);
        Assert.Equal(1, code);
        Assert.Contains("B4S_MPI_LIBRARY=/nonexistent/libmpi.so could not be loaded", err);
        Assert.Contains("apt-get install openmpi-bin", err);
        // A library that is not Open MPI is named as such.
        (code, _, err) = CliTests.B4sWith(new Dictionary<string, string> { ["PMI_SIZE"] = "2", [MpiLibrary.LibraryVariable] = "libc.so.6" }, "train", recipe);
        Assert.Equal(1, code);
        Assert.Contains("is not Open MPI (no ompi_mpi_comm_world", err);
        // doctor, not launched, reports the same reason instead of failing.
        (code, var stdout, err) = CliTests.B4sWith(new Dictionary<string, string> { [MpiLibrary.LibraryVariable] = "/nonexistent/libmpi.so" }, "doctor", "--json");
        Assert.True(code == 0, err);
        var mpi = JsonDocument.Parse(stdout).RootElement.GetProperty("mpi");
        Assert.Equal(1, mpi.GetProperty("world_size").GetInt32());
        Assert.Contains("could not be loaded", mpi.GetProperty("error").GetString());
    }

    [Fact]
    public void A_launch_that_MPI_does_not_see_is_refused()
    {
        // The environment of a 2-process launch without the launcher (as with another MPI's mpiexec): MPI starts a
        // one-process world, and b4s refuses to train as if alone.
        MpirunOrSkip();
        var (code, _, err) = CliTests.B4sWith(new Dictionary<string, string> { ["OMPI_COMM_WORLD_SIZE"] = "2" }, "train", WriteTask("mismatch", epochs: 1));
        Assert.Equal(1, code);
        Assert.Contains("the launcher says 2 processes (OMPI_COMM_WORLD_SIZE) but Open MPI", err);
        Assert.Contains("sees 1: start the run with the mpirun of the Open MPI that b4s loads", err);
        Assert.False(Directory.Exists(Path.Combine(dir, "mismatch")));
    }

    [Fact]
    public void A_killed_rank_ends_the_job_and_a_stopped_rank_times_out()
    {
        string mpirun = MpirunOrSkip();
        // Open MPI: when a rank dies, mpirun kills the others and exits non-zero.
        var (code, stdout, err) = Interrupt(mpirun, "killed", signal: SigKill, timeoutSeconds: null);
        Assert.NotEqual(0, code);
        Assert.Contains("exited on signal 9", stdout + err);
        // A rank that stops answering (SIGSTOP) is noticed by the others after B4S_MPI_TIMEOUT seconds: they say so and abort the job.
        (code, stdout, err) = Interrupt(mpirun, "stopped", signal: SigStop, timeoutSeconds: 3);
        Assert.NotEqual(0, code);
        Assert.Contains("rank 0 of 2 waited", stdout + err);
        Assert.Contains("(limit 3 s, B4S_MPI_TIMEOUT)", stdout + err);
        Assert.Contains("a rank is stuck, far behind or gone; aborting the job", stdout + err);
    }

    const int SigKill = 9, SigStop = 19, SigCont = 18;

    [LibraryImport("libc", EntryPoint = "kill")]
    private static partial int Kill(int pid, int signal);

    /// <summary>Starts a long 2-rank run, waits for its third step, sends rank 1 <paramref name="signal"/>, and waits for mpirun to end.</summary>
    (int Code, string Out, string Err) Interrupt(string mpirun, string name, int signal, int? timeoutSeconds)
    {
        string recipe = WriteTask(name, epochs: 500);
        var env = timeoutSeconds is int t ? new Dictionary<string, string> { [MpiOptions.TimeoutVariable] = t.ToString() } : null;
        using var p = StartMpirun(mpirun, 2, env, "train", recipe);
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        int rank1 = -1;
        try
        {
            string metrics = Path.Combine(dir, name, "metrics.jsonl");
            var clock = Stopwatch.StartNew();
            while (!(File.Exists(metrics) && File.ReadLines(metrics).Count() >= 3))
            {
                if (p.HasExited) Assert.Fail($"mpirun ended early: {stdout.Result}{stderr.Result}");
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(120), "no third step after 120 s");
                Thread.Sleep(100);
            }
            rank1 = RankPid(p.Id, 1);
            Assert.Equal(0, Kill(rank1, signal));
            Assert.True(p.WaitForExit(120_000), "mpirun did not end within 120 s of the signal");
            return (p.ExitCode, stdout.Result, stderr.Result);
        }
        finally
        {
            if (rank1 > 0 && signal == SigStop) { Kill(rank1, SigCont); Kill(rank1, SigKill); }
            if (!p.HasExited) p.Kill(true);
        }
    }

    /// <summary>The process of rank <paramref name="rank"/> among mpirun's children (OMPI_COMM_WORLD_RANK in its environment).</summary>
    static int RankPid(int mpirunPid, int rank)
    {
        var children = new List<string>();
        foreach (var d in Directory.GetDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(d), out int pid)) continue;
            try
            {
                string stat = File.ReadAllText(Path.Combine(d, "stat"));
                int parent = int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[1]);
                if (parent != mpirunPid) continue;
                var ranks = File.ReadAllText(Path.Combine(d, "environ")).Split('\0').Where(v => v.StartsWith("OMPI_COMM_WORLD_RANK=", StringComparison.Ordinal)).ToList();
                if (ranks.Contains($"OMPI_COMM_WORLD_RANK={rank}")) return pid;
                children.Add($"{pid} {stat[..stat.IndexOf(')')]}) {string.Join(",", ranks)}");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException) { }
        }
        throw new InvalidOperationException($"no child of mpirun {mpirunPid} is rank {rank}; its children: {string.Join("; ", children)}");
    }
}
