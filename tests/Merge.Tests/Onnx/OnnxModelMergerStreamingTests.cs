using System.Globalization;
using Onnx;
using OnnxLora.Core.Onnx;
using OnnxLora.Merge.Onnx;
using static OnnxLora.Merge.Tests.Onnx.TorchLikeModel;

namespace OnnxLora.Merge.Tests.Onnx;

/// <summary>The streaming merge of models with external data: 64-bit offsets, the input's layout kept, forged ranges rejected.</summary>
public sealed partial class OnnxModelMergerTests
{
    private const long Past2GiB = (3L << 30) + 4096;

    /// <summary>
    /// Rewrites the model at <paramref name="input"/> (external data in "model.onnx.data") into a new folder with every
    /// external tensor moved <paramref name="shift"/> bytes further into a sparse data file, or with <paramref name="edit"/> applied.
    /// </summary>
    private static string Rewritten(string input, long shift, Action<GraphProto>? edit = null)
    {
        var model = OnnxFile.Load(input, new OnnxLoadOptions { LoadExternalData = false });
        string dir = TestData.NewDir();
        string path = Path.Combine(dir, "model.onnx");
        foreach (var t in model.Graph.Initializer.Where(OnnxTensors.IsExternal))
        {
            var offset = t.ExternalData.Single(e => e.Key == "offset");
            offset.Value = (long.Parse(offset.Value, CultureInfo.InvariantCulture) + shift).ToString(CultureInfo.InvariantCulture);
        }
        edit?.Invoke(model.Graph);
        File.WriteAllBytes(path, Google.Protobuf.MessageExtensions.ToByteArray(model));
        using (var data = new FileStream(path + ".data", FileMode.CreateNew, FileAccess.Write))
        {
            data.Position = shift;
            using var source = File.OpenRead(input + ".data");
            source.CopyTo(data);
        }
        return path;
    }

    [TestMethod]
    public void Merge_ExternalDataPast2GiB_MergesAsAtSmallOffsetsAndKeepsTheLayout()
    {
        var model = Build(new TorchLikeSpec { Seed = 40 });
        string input = model.Save(externalData: true);
        string shifted = Rewritten(input, Past2GiB);
        var (adapter, _) = OnnxTestKit.Lora(AllModules, r: 4, alpha: 8, seed: 700);
        using (adapter)
        {
            string near = NewOutput(), far = NewOutput();
            OnnxModelMerger.Merge(input, OnnxTestKit.One(adapter), near);
            var result = OnnxModelMerger.Merge(shifted, OnnxTestKit.One(adapter), far);

            Assert.AreEqual(new FileInfo(shifted + ".data").Length, new FileInfo(result.ExternalDataPath!).Length, "same layout: same offsets, same size");
            var written = OnnxFile.Load(far, new OnnxLoadOptions { LoadExternalData = false });
            Assert.IsTrue(written.Graph.Initializer.Where(OnnxTensors.IsExternal)
                .All(t => long.Parse(t.ExternalData.Single(e => e.Key == "offset").Value, CultureInfo.InvariantCulture) >= Past2GiB));
            foreach (var t in OnnxFile.Load(near).Graph.Initializer)
            {
                CollectionAssert.AreEqual(OnnxTensors.ReadAsSingle(t), OnnxTestKit.Initializer(far, t.Name), t.Name);
            }
        }
    }

    [TestMethod]
    public void Merge_ExternalRangesThatOverlap_AreRejectedAndLeaveNoOutput()
    {
        var model = Build(new TorchLikeSpec { Seed = 41 });
        string input = model.Save(externalData: true);
        string q = model.InitializerOf[Q + ".weight"], o = model.InitializerOf[O + ".weight"];
        // Q's weight claims O's bytes (same dims): merging one in place would change the other.
        string forged = Rewritten(input, 0, g =>
        {
            var qOffset = g.Initializer.Single(t => t.Name == q).ExternalData.Single(e => e.Key == "offset");
            qOffset.Value = g.Initializer.Single(t => t.Name == o).ExternalData.Single(e => e.Key == "offset").Value;
        });
        var (adapter, _) = OnnxTestKit.Lora([Q], r: 2, alpha: 2, seed: 710);
        using (adapter)
        {
            string output = NewOutput();
            var e = BadInput.Throws(() => OnnxModelMerger.Merge(forged, OnnxTestKit.One(adapter), output));
            StringAssert.Contains(e.Message, "overlapping tensor");
            Assert.IsEmpty(Directory.GetFileSystemEntries(Path.GetDirectoryName(output)!), "no output, data file or temporary file is left");
        }
    }

    [TestMethod]
    public void Merge_ExternalDataOutsideTheModelFolder_IsRejectedAndLeavesNoOutput()
    {
        var model = Build(new TorchLikeSpec { Seed = 42 });
        string input = model.Save(externalData: true);
        string forged = Rewritten(input, 0, g =>
        {
            foreach (var t in g.Initializer.Where(OnnxTensors.IsExternal))
            {
                t.ExternalData.Single(e => e.Key == "location").Value = "../" + Path.GetFileName(Path.GetDirectoryName(input)) + "/model.onnx.data";
            }
        });
        var (adapter, _) = OnnxTestKit.Lora([Q], r: 2, alpha: 2, seed: 720);
        using (adapter)
        {
            string output = NewOutput();
            var e = BadInput.Throws(() => OnnxModelMerger.Merge(forged, OnnxTestKit.One(adapter), output));
            StringAssert.Contains(e.Message, "'..' segment");
            Assert.IsEmpty(Directory.GetFileSystemEntries(Path.GetDirectoryName(output)!));
        }
    }
}
