using Onnx;
using OnnxLora.Core.Onnx;

namespace OnnxLora.Core.Tests.Onnx;

/// <summary>Tiny models and temp folders for the ONNX IO tests.</summary>
internal static class OnnxTestModels
{
    /// <summary>Y = X·W + B with X [batch, 4], W [4, rows] and B [rows]: two initializers of 64·rows and 4·rows bytes.</summary>
    public static ModelProto Linear(int rows = 300, int opset = 17)
    {
        var b = new OnnxGraphBuilder(opset);
        b.AddInput("x", DType.F32, "batch", 4);
        float[] w = new float[4 * rows];
        for (int i = 0; i < w.Length; i++)
        {
            w[i] = (i % 17) * 0.25f - 2f;
        }
        float[] bias = new float[rows];
        for (int i = 0; i < rows; i++)
        {
            bias[i] = i * 0.5f;
        }
        b.AddInitializer("w", DType.F32, [4, rows], w);
        b.AddInitializer("b", DType.F16, [rows], bias);
        string bias32 = b.AddNode("Cast", ["b"], "/cast", OnnxAttributes.Int("to", (long)TensorProto.Types.DataType.Float));
        string mm = b.AddNode("MatMul", ["x", "w"], "/mm");
        b.AddNode("Add", [mm, bias32], ["y"], "/add");
        b.AddOutput("y", DType.F32, "batch", rows);
        b.AddMetadata("producer_note", "test");
        return b.Build();
    }

    public static string TempFolder()
    {
        string dir = Path.Combine(Path.GetTempPath(), "onnxlora-core-onnx-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return dir;
    }
}
