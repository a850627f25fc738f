using Bert4Sharp.Bench;

// Bert4Sharp benchmarks. Every target is a ratio against a peer measured in the same run.
//   dotnet run -c Release --project bench/Bert4Sharp.Bench -- checkpoint-load [--keep] [--rounds N]
string which = args.Length > 0 ? args[0] : "checkpoint-load";
return which switch
{
    "checkpoint-load" => CheckpointLoadBench.Run(args[1..]),
    "tokenize" => TokenizerBench.Run(args[1..]),
    "encoder" => EncoderBench.Run(args[1..]),
    "generation" => GenerationBench.Run(args[1..]),
    "training" => TrainingBench.Run(args[1..]),
    "gemm" => GemmBench.Run(args[1..]),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("usage: Bert4Sharp.Bench checkpoint-load [--rounds N] [--keep] [--file PATH] | tokenize [SHARED_DIR] | encoder | generation [--quick] | training [--quick] | gemm");
    return 2;
}
