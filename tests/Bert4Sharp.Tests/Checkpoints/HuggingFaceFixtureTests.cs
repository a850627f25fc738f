using Bert4Sharp.Checkpoints;

namespace Bert4Sharp.Tests.Checkpoints;

/// <summary>The safetensors files written by the reference implementation (Hugging Face's Rust writer) read cleanly.</summary>
public class HuggingFaceFixtureTests
{
    public static TheoryData<string> Files()
    {
        var data = new TheoryData<string>();
        foreach (var f in Directory.GetFiles(TestPaths.Fixture("hf"), "*.safetensors", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
            data.Add(Path.GetRelativePath(TestPaths.Fixture("hf"), f));
        return data;
    }

    [Theory]
    [MemberData(nameof(Files))]
    public void EveryTensorReads(string relative)
    {
        using var ck = Checkpoint.OpenMapped(TestPaths.Fixture("hf", relative));
        Assert.NotEmpty(ck.Entries);
        foreach (var e in ck.Entries)
        {
            Assert.Equal(TensorState.Ok, e.State);
            Assert.True(ck.TryGetSpan(e, out var span));
            Assert.Equal(ck.ReadBytes(e), span.ToArray());
        }
        if (relative.EndsWith("io.safetensors"))
            Assert.Equal(TensorDType.I64, ck["input_ids"].DType);
        else
            Assert.Equal("pt", ck.Metadata["format"]);
    }
}
