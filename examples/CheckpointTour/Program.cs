// Checkpoint tour: open any checkpoint, load its readable tensors into TorchSharp, summarise them,
// and save them as safetensors. Usage:
//   dotnet run --project examples/CheckpointTour -- <checkpoint> [out.safetensors]
using Bert4Sharp.Checkpoints;
using TorchSharp;

if (args.Length < 1)
{
    Console.Error.WriteLine("usage: CheckpointTour <checkpoint file or directory> [out.safetensors]");
    return 2;
}
using var ck = Checkpoint.Open(args[0]);
Console.WriteLine($"{ck.Path}: {ck.Format}, {ck.Entries.Count} tensors");
foreach (var note in ck.Notes) Console.WriteLine("note: " + note);

var loaded = new List<(string Name, torch.Tensor Tensor)>();
foreach (var e in ck.Entries.Where(e => e.State == TensorState.Ok && e.DType != TensorDType.String))
{
    var t = ck.ReadTensor(e);
    loaded.Add((e.Name, t));
    if (t.is_floating_point() && t.numel() > 0)
    {
        using var f = t.to(torch.float32);
        Console.WriteLine($"  {e.Name,-60} {e.ShapeText,-14} mean {f.mean().item<float>(),10:F5}  std {(f.numel() > 1 ? f.std().item<float>() : 0f),9:F5}");
    }
    else Console.WriteLine($"  {e.Name,-60} {e.ShapeText,-14} {e.DType.DisplayName()}");
}
Console.WriteLine($"loaded {loaded.Count} of {ck.Entries.Count} tensors ({loaded.Sum(x => x.Tensor.numel()):N0} values)");

if (args.Length > 1)
{
    SafetensorsWriter.Write(args[1], loaded.Select(x => TensorSource.From(x.Name, x.Tensor)));
    Console.WriteLine($"saved {args[1]}");
}
foreach (var (_, t) in loaded) t.Dispose();
return 0;
