using static TorchSharp.torch;

namespace OnnxLora.Models.Tests;

[TestClass]
public sealed class TorchSharpSmokeTests
{
    [TestMethod]
    public void ForwardAndBackward_OnLinearLayer_GivesAnalyticGradient()
    {
        using var scope = NewDisposeScope();
        var x = tensor(new float[] { 1f, 2f, 3f }, new long[] { 1, 3 });
        var w = tensor(new float[] { 0.5f, -1f, 2f, 1f, 1f, 1f }, new long[] { 2, 3 }).requires_grad_(true);
        var y = nn.functional.linear(x, w);
        var loss = y.pow(2).sum();
        loss.backward();

        // y = x·Wᵀ = [0.5 - 2 + 6, 1 + 2 + 3] = [4.5, 6]; d(Σy²)/dW[i,j] = 2·y[i]·x[j].
        float[] grad = w.grad!.data<float>().ToArray();
        double[] y0 = { 4.5, 6.0 };
        double[] x0 = { 1, 2, 3 };
        for (int i = 0; i < 2; i++)
        {
            for (int j = 0; j < 3; j++)
            {
                Assert.AreEqual(2 * y0[i] * x0[j], grad[i * 3 + j], 1e-5);
            }
        }
        Assert.AreEqual(4.5 * 4.5 + 36.0, loss.item<float>(), 1e-4);
    }
}
