using OnnxLora.Core.HuggingFace;
using static TorchSharp.torch;

namespace OnnxLora.Models.Llama;

/// <summary>
/// Rotary position embeddings (RoPE, Hugging Face "rotate_half" layout): for position p and pair
/// index i &lt; d/2 the angle is p·inv_freq[i], with inv_freq[i] = θ^(-2i/d) (adjusted by
/// <c>rope_scaling</c>). <see cref="forward"/> gives cos and sin of shape [batch, seq, d], the angles
/// repeated twice along the last axis. Holds no parameters (and nothing in the state dict).
/// </summary>
public sealed partial class LlamaRotaryEmbedding : nn.Module<Tensor, (Tensor Cos, Tensor Sin)>
{
    public LlamaRotaryEmbedding(LlamaConfig config) : base(nameof(LlamaRotaryEmbedding))
    {
        HeadDim = config.HeadDim;
        InverseFrequencies = ComputeInverseFrequencies(config);
        RegisterComponents();
    }

    /// <summary>Size of one attention head (d).</summary>
    public int HeadDim { get; }

    /// <summary>The d/2 inverse frequencies, after rope_scaling.</summary>
    public IReadOnlyList<float> InverseFrequencies { get; }

    /// <summary>cos and sin [batch, seq, d] (fp32) for int64 position ids [batch, seq].</summary>
    public override (Tensor Cos, Tensor Sin) forward(Tensor positionIds)
    {
        using var scope = NewDisposeScope();
        var inv = tensor(InverseFrequencies.ToArray(), device: positionIds.device);
        var angles = positionIds.to(ScalarType.Float32).unsqueeze(-1) * inv;
        var doubled = cat([angles, angles], -1);
        var cos = doubled.cos();
        var sin = doubled.sin();
        return (cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }

    /// <summary>x·cos + rotate_half(x)·sin for x [batch, heads, seq, d] and cos/sin [batch, seq, d].</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        long half = x.shape[^1] / 2;
        var x1 = x.narrow(-1, 0, half);
        var x2 = x.narrow(-1, half, half);
        var rotated = cat([x2.neg(), x1], -1);
        return (x * cos.unsqueeze(1) + rotated * sin.unsqueeze(1)).MoveToOuterDisposeScope();
    }

    /// <summary>θ^(-2i/d) for i in [0, d/2), then the rope_scaling adjustment, computed in double.</summary>
    internal static float[] ComputeInverseFrequencies(LlamaConfig config)
    {
        int d = config.HeadDim;
        var inv = new double[d / 2];
        for (int i = 0; i < inv.Length; i++)
        {
            inv[i] = 1.0 / Math.Pow(config.RopeTheta, 2.0 * i / d);
        }
        if (config.RopeScaling is { } scaling)
        {
            for (int i = 0; i < inv.Length; i++)
            {
                inv[i] = scaling.RopeType switch
                {
                    "linear" => inv[i] / scaling.Factor,
                    "llama3" => Llama3(inv[i], scaling),
                    _ => inv[i],
                };
            }
        }
        return inv.Select(v => (float)v).ToArray();
    }

    /// <summary>Llama 3.1 scaling: long wavelengths divided by the factor, short ones kept, a smooth blend between.</summary>
    private static double Llama3(double invFreq, RopeScaling s)
    {
        double lowFreqWavelen = s.OriginalMaxPositionEmbeddings / s.LowFreqFactor;
        double highFreqWavelen = s.OriginalMaxPositionEmbeddings / s.HighFreqFactor;
        double wavelen = 2 * Math.PI / invFreq;
        if (wavelen < highFreqWavelen)
        {
            return invFreq;
        }
        if (wavelen > lowFreqWavelen)
        {
            return invFreq / s.Factor;
        }
        double smooth = (s.OriginalMaxPositionEmbeddings / wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
        return (1 - smooth) * invFreq / s.Factor + smooth * invFreq;
    }
}
