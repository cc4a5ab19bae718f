using Onnx;
using OnnxLora.Core;
using OnnxLora.Core.Onnx;
using static TorchSharp.torch;

namespace OnnxLora.Models.Onnx;

public sealed partial class OnnxEmitContext
{
    /// <summary>A single-output node named under this module's path.</summary>
    public string Op(string opType, params string[] inputs) => Builder.AddNode(opType, inputs, NodeName(opType));

    /// <summary>A single-output node with attributes, named under this module's path.</summary>
    public string Op(string opType, IReadOnlyList<string> inputs, params AttributeProto[] attributes) =>
        Builder.AddNode(opType, inputs, NodeName(opType), attributes);

    /// <summary>
    /// A Linear: <c>MatMul(x, Wᵀ) [+ b]</c>, Wᵀ [in, out] stored as "&lt;path&gt;.weight" and b as
    /// "&lt;path&gt;.bias".
    /// </summary>
    public string Linear(string input, Tensor weight, Tensor? bias)
    {
        string w = ParameterInitializer(ParameterName("weight"), weight, transpose: true);
        string y = Op("MatMul", input, w);
        return bias is null ? y : Op("Add", y, ParameterInitializer(ParameterName("bias"), bias));
    }

    /// <summary>An Embedding lookup: <c>Gather(E, ids)</c> with E [num, dim] stored as "&lt;path&gt;.weight".</summary>
    public string Embedding(string ids, Tensor weight) =>
        Op("Gather", [ParameterInitializer(ParameterName("weight"), weight), ids], OnnxAttributes.Int("axis", 0));

    /// <summary>LayerNormalization over the last axis, computed in fp32 when the graph computes in fp16.</summary>
    public string LayerNorm(string input, Tensor? weight, Tensor? bias, double eps)
    {
        if (weight is null)
        {
            throw Internals.OnnxEmitThrow.Unsupported(Path, "LayerNorm without elementwise affine parameters is not supported.");
        }
        string scale = ParameterInitializer(ParameterName("weight"), weight);
        var inputs = new List<string> { input, scale };
        if (bias is not null)
        {
            inputs.Add(ParameterInitializer(ParameterName("bias"), bias));
        }
        return Op("LayerNormalization", inputs, OnnxAttributes.Int("axis", -1), OnnxAttributes.Float("epsilon", (float)eps),
            OnnxAttributes.Int("stash_type", 1));
    }

    /// <summary>
    /// RMS norm as LLaMA computes it: in fp32, <c>x / sqrt(mean(x²) + eps)</c>, cast back to the
    /// compute type, times the weight. Built from Pow, ReduceMean, Add, Sqrt, Div, Mul.
    /// </summary>
    public string RmsNorm(string input, Tensor weight, double eps)
    {
        string x = ToFloat32(input);
        string squared = Op("Pow", x, Scalar(2f, DType.F32));
        string mean = ReduceMean(squared, -1);
        string std = Op("Sqrt", Op("Add", mean, Scalar((float)eps, DType.F32)));
        string normed = FromFloat32(Op("Div", x, std));
        return Op("Mul", ParameterInitializer(ParameterName("weight"), weight), normed);
    }

    /// <summary>Mean over one axis, keeping it: the axes are an attribute up to opset 17 and an input from 18.</summary>
    public string ReduceMean(string input, long axis)
    {
        return Opset >= 18
            ? Op("ReduceMean", [input, Int64s(axis)], OnnxAttributes.Int("keepdims", 1))
            : Op("ReduceMean", [input], OnnxAttributes.Ints("axes", axis), OnnxAttributes.Int("keepdims", 1));
    }

    /// <summary>SiLU: <c>x · Sigmoid(x)</c>.</summary>
    public string Silu(string input) => Op("Mul", input, Op("Sigmoid", input));

    /// <summary>Exact (erf) GELU: the Gelu operator from opset 20, else <c>0.5·x·(1 + Erf(x/√2))</c>.</summary>
    public string Gelu(string input)
    {
        if (Opset >= 20)
        {
            return Op("Gelu", [input], OnnxAttributes.String("approximate", "none"));
        }
        string erf = Op("Erf", Op("Div", input, Scalar(MathF.Sqrt(2f))));
        return Op("Mul", Op("Mul", input, Scalar(0.5f)), Op("Add", erf, Scalar(1f)));
    }

    /// <summary>A Cast node to <paramref name="dtype"/>.</summary>
    public string Cast(string input, DType dtype) =>
        Op("Cast", [input], OnnxAttributes.Int("to", (long)dtype.ToOnnx()));

    /// <summary>A compute-type value as fp32 (a Cast only in an fp16 graph).</summary>
    public string ToFloat32(string computeValue) => ComputeType == DType.F32 ? computeValue : Cast(computeValue, DType.F32);

    /// <summary>An fp32 value in the compute type (a Cast only in an fp16 graph).</summary>
    public string FromFloat32(string value) => ComputeType == DType.F32 ? value : Cast(value, ComputeType);

    /// <summary>Reshape to <paramref name="shape"/> (0 copies the input's size, −1 infers).</summary>
    public string Reshape(string input, params long[] shape) => Op("Reshape", input, Int64s(shape));

    /// <summary>Transpose with <paramref name="perm"/>.</summary>
    public string Transpose(string input, params long[] perm) => Op("Transpose", [input], OnnxAttributes.Ints("perm", perm));

    /// <summary>Unsqueeze at <paramref name="axes"/> (axes as an input, opset 13+).</summary>
    public string Unsqueeze(string input, params long[] axes) => Op("Unsqueeze", input, Int64s(axes));

    /// <summary>Slice [start, end) along <paramref name="axis"/>.</summary>
    public string Slice(string input, long start, long end, long axis) =>
        Op("Slice", input, Int64s(start), Int64s(end), Int64s(axis));

    /// <summary>Softmax over the last axis.</summary>
    public string Softmax(string input) => Op("Softmax", [input], OnnxAttributes.Int("axis", -1));

    /// <summary>[batch, seq, heads·d] → [batch, heads, seq, d].</summary>
    public string SplitHeads(string input, long heads, long headDim) => Transpose(Reshape(input, 0, 0, heads, headDim), 0, 2, 1, 3);

    /// <summary>[batch, heads, seq, d] → [batch, seq, heads·d].</summary>
    public string MergeHeads(string input, long width) => Reshape(Transpose(input, 0, 2, 1, 3), 0, 0, width);

    /// <summary>
    /// Scaled dot-product attention: <c>softmax(q·kᵀ·scale + mask)·v</c> for q, k, v [batch, heads, seq, d]
    /// and an fp32 additive mask broadcastable to [batch, heads, seq, seq]. Scores, mask and softmax
    /// are in fp32 (so an fp16 graph never adds a large negative number in fp16); the probabilities
    /// are cast back to the compute type.
    /// </summary>
    public string Attention(string q, string k, string v, string? additiveMaskF32, double scale)
    {
        string scores = Op("Mul", Op("MatMul", q, Transpose(k, 0, 1, 3, 2)), Scalar((float)scale));
        scores = ToFloat32(scores);
        if (additiveMaskF32 is not null)
        {
            scores = Op("Add", scores, additiveMaskF32);
        }
        string probs = FromFloat32(Softmax(scores));
        return Op("MatMul", probs, v);
    }

    /// <summary>
    /// The fp32 additive mask [batch, 1, seq, seq] from a boolean "may attend" tensor broadcastable to it:
    /// 0 where allowed, float.MinValue (the lowest finite fp32) elsewhere.
    /// </summary>
    public string AdditiveMask(string allowed) =>
        Op("Where", allowed, Scalar(0f, DType.F32), Scalar(float.MinValue, DType.F32));
}
