using Bert4Sharp.Runtime;
using TorchSharp;

namespace Bert4Sharp.Tests;

public class RuntimeFixTests
{
    [Fact]
    public void TorchInitialisesInsideTheTestHost()
    {
        using var a = torch.arange(6, dtype: torch.float32).reshape(2, 3);
        using var b = torch.ones(3, 2);
        using var c = a.matmul(b);
        Assert.Equal(new float[] { 3, 3, 12, 12 }, c.data<float>().ToArray());
    }
}
