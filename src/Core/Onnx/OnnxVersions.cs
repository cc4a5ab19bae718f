namespace OnnxLora.Core.Onnx;

/// <summary>The ONNX IR version paired with each default-domain opset, as ONNX's versioning table lists them.</summary>
public static class OnnxVersions
{
    /// <summary>Lowest opset the builder accepts.</summary>
    public const int MinOpset = 11;

    /// <summary>Highest opset the builder accepts.</summary>
    public const int MaxOpset = 21;

    /// <summary>
    /// The IR version of the ONNX release that introduced <paramref name="opset"/>: 11 → 6 (ONNX 1.6),
    /// 12–14 → 7 (1.7–1.9), 15–18 → 8 (1.10–1.13), 19–20 → 9 (1.14–1.15), 21 → 10 (1.16).
    /// </summary>
    public static long IrVersionForOpset(int opset) => opset switch
    {
        11 => 6,
        >= 12 and <= 14 => 7,
        >= 15 and <= 18 => 8,
        19 or 20 => 9,
        21 => 10,
        _ => throw new ArgumentOutOfRangeException(nameof(opset), opset, $"opset {opset} is not supported; expected {MinOpset}..{MaxOpset}."),
    };
}
