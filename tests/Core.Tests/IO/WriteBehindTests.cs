using OnnxLora.Core.IO;

namespace OnnxLora.Core.Tests.IO;

[TestClass]
public sealed class WriteBehindTests
{
    [TestMethod]
    public void Writes_RunInTheOrderQueued_WithAtMostCapacityPlusOneBuffers()
    {
        var written = new List<int>();
        var buffers = new HashSet<byte[]>(ReferenceEqualityComparer.Instance);
        using (var behind = new WriteBehind(capacity: 2, bufferBytes: 8))
        {
            for (int i = 0; i < 200; i++)
            {
                byte[] buffer = behind.RentBuffer();
                buffers.Add(buffer);
                buffer[0] = (byte)i;
                int expectedLength = (i % 8) + 1;
                behind.EnqueueWrite(buffer, expectedLength, data =>
                {
                    Assert.AreEqual(expectedLength, data.Length);
                    written.Add(data.Span[0]);
                });
                if (i % 3 == 0)
                {
                    int n = i;
                    behind.Enqueue(() => written.Add(1000 + n));
                }
            }
            behind.Complete();
        }

        var expected = new List<int>();
        for (int i = 0; i < 200; i++)
        {
            expected.Add((byte)i);
            if (i % 3 == 0)
            {
                expected.Add(1000 + i);
            }
        }
        CollectionAssert.AreEqual(expected, written);
        Assert.IsLessThanOrEqualTo(3, buffers.Count, "capacity + 1 buffers, reused");
    }

    [TestMethod]
    public void FailedWrite_SurfacesItsExceptionFromTheProducer_AndStopsTheRest()
    {
        int ranAfter = 0;
        using var behind = new WriteBehind(capacity: 1, bufferBytes: 4);
        behind.Enqueue(() => throw new IOException("disk full"));
        var e = Assert.ThrowsExactly<IOException>(() =>
        {
            // The producer keeps going until the failure reaches it: from RentBuffer, Enqueue or Complete, never a hang.
            for (int i = 0; i < 100; i++)
            {
                behind.EnqueueWrite(behind.RentBuffer(), 4, _ => ranAfter++);
            }
            behind.Complete();
        });
        Assert.AreEqual("disk full", e.Message);
        Assert.AreEqual(0, ranAfter, "nothing runs after a failed write");
    }

    [TestMethod]
    public void TensorBuffers_AtMostTwo_GrownToTheLargest_WrittenInPiecesInOrder()
    {
        var pieces = new List<(int Tensor, long Offset, int Length, float First)>();
        var buffers = new HashSet<float[]>(ReferenceEqualityComparer.Instance);
        int[] counts = [5, 3, 70 << 18, 7, 0, 2];
        using (var behind = new WriteBehind(capacity: 3, bufferBytes: 8))
        {
            for (int k = 0; k < counts.Length; k++)
            {
                float[] buffer = behind.RentTensorBuffer(counts[k]);
                Assert.IsGreaterThanOrEqualTo(counts[k], buffer.Length);
                buffers.Add(buffer);
                buffer.AsSpan(0, counts[k]).Fill(k);
                int tensor = k;
                behind.EnqueueTensorWrite(buffer, (long)counts[k] * sizeof(float),
                    (offset, bytes) => pieces.Add((tensor, offset, bytes.Length, bytes.Length > 0 ? BitConverter.ToSingle(bytes) : -1)));
            }
            behind.Complete();
        }

        // Tensor 2 is 70 MiB: a 64 MiB piece and a 6 MiB one, at their offsets; an empty tensor is one empty piece.
        (int, long, int, float)[] expected =
        [
            (0, 0, 20, 0), (1, 0, 12, 1), (2, 0, 64 << 20, 2), (2, 64 << 20, 6 << 20, 2), (3, 0, 28, 3), (4, 0, 0, -1), (5, 0, 8, 5),
        ];
        CollectionAssert.AreEqual(expected, pieces);
        Assert.IsLessThanOrEqualTo(4, buffers.Count, "two in use at most; one too small is replaced by a larger one");
    }

    [TestMethod]
    public void TensorBuffer_ThirdWaitsForAWrite_AndAFailedWriteEndsTheWaitWithItsException()
    {
        using var gate = new ManualResetEventSlim();
        using var behind = new WriteBehind(capacity: 3, bufferBytes: 8);
        behind.EnqueueTensorWrite(behind.RentTensorBuffer(4), 16, (_, _) =>
        {
            gate.Wait();
            throw new IOException("disk full");
        });
        behind.EnqueueTensorWrite(behind.RentTensorBuffer(4), 16, (_, _) => { });
        var third = Task.Run(() => behind.RentTensorBuffer(4));
        Assert.IsFalse(third.Wait(200), "both buffers wait to be written");

        gate.Set();
        var e = Assert.ThrowsExactly<IOException>(() => third.GetAwaiter().GetResult());
        Assert.AreEqual("disk full", e.Message);
    }

    [TestMethod]
    public void Drain_WaitsForTheQueuedWrites_AndTheWritesGoOnAfterIt()
    {
        var written = new List<int>();
        using var behind = new WriteBehind(capacity: 2, bufferBytes: 8);
        behind.Enqueue(() =>
        {
            Thread.Sleep(100);
            written.Add(1);
        });
        behind.Drain();
        CollectionAssert.AreEqual(new[] { 1 }, written);

        behind.Enqueue(() => written.Add(2));
        behind.Complete();
        CollectionAssert.AreEqual(new[] { 1, 2 }, written);
    }

    [TestMethod]
    public void Drain_AfterAFailedWrite_ThrowsItsException()
    {
        using var behind = new WriteBehind(capacity: 2, bufferBytes: 8);
        behind.Enqueue(() => throw new IOException("disk full"));
        Assert.AreEqual("disk full", Assert.ThrowsExactly<IOException>(behind.Drain).Message);
    }
}
