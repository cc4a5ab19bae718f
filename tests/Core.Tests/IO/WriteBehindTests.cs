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
}
