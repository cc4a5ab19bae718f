using OnnxLora.Core.HuggingFace;
using OnnxLora.Models.Llama;

namespace OnnxLora.Models.Tests.Models;

[TestClass]
public sealed class RotaryTests
{
    [TestMethod]
    public void InverseFrequencies_Plain_AreThetaToMinusTwoIOverD()
    {
        var config = TinyConfigs.Llama() with { RopeTheta = 500000.0 };
        using var rope = new LlamaRotaryEmbedding(config);
        Assert.HasCount(4, rope.InverseFrequencies);
        for (int i = 0; i < 4; i++)
        {
            Assert.AreEqual(Math.Pow(500000.0, -i / 4.0), rope.InverseFrequencies[i], 1e-7);
        }
    }

    [TestMethod]
    public void InverseFrequencies_LinearScaling_DividesByFactor()
    {
        var config = TinyConfigs.Llama() with { RopeScaling = new RopeScaling { RopeType = "linear", Factor = 4 } };
        using var rope = new LlamaRotaryEmbedding(config);
        for (int i = 0; i < 4; i++)
        {
            Assert.AreEqual(Math.Pow(10000.0, -i / 4.0) / 4, rope.InverseFrequencies[i], 1e-7);
        }
    }

    [TestMethod]
    public void InverseFrequencies_Llama3Scaling_KeepsHighScalesLowAndBlendsMiddle()
    {
        // head_dim 64 and theta 500000 as in Llama 3.1; wavelengths 2π/inv span the three regimes.
        var config = TinyConfigs.Llama() with
        {
            HiddenSize = 256,
            NumAttentionHeads = 4,
            NumKeyValueHeads = 4,
            RopeTheta = 500000.0,
            RopeScaling = new RopeScaling { RopeType = "llama3", Factor = 8, LowFreqFactor = 1, HighFreqFactor = 4, OriginalMaxPositionEmbeddings = 8192 },
        };
        using var rope = new LlamaRotaryEmbedding(config);
        int kept = 0, scaled = 0, blended = 0;
        for (int i = 0; i < 32; i++)
        {
            double inv = Math.Pow(500000.0, -2.0 * i / 64);
            double wavelength = 2 * Math.PI / inv;
            double expected;
            if (wavelength < 8192 / 4.0)
            {
                expected = inv;
                kept++;
            }
            else if (wavelength > 8192 / 1.0)
            {
                expected = inv / 8;
                scaled++;
            }
            else
            {
                double smooth = (8192 / wavelength - 1) / (4 - 1);
                expected = (1 - smooth) * inv / 8 + smooth * inv;
                blended++;
            }
            Assert.AreEqual(expected, rope.InverseFrequencies[i], Math.Abs(expected) * 1e-6, $"i = {i}");
        }
        Assert.IsTrue(kept > 0 && scaled > 0 && blended > 0, "the test must cover all three regimes");
    }
}
