using System.Threading.Channels;

namespace OnnxLora.Core.IO;

/// <summary>
/// Runs writes in the order given on one background thread, with at most a few waiting, so that a streaming
/// producer computes (reads, merges, converts) the next block while the previous one is written: a bounded
/// producer/consumer pipeline (System.Threading.Channels), whose bound keeps memory at a few blocks. A failed write
/// stops the pipeline and its exception surfaces from the next <see cref="Enqueue"/> or from <see cref="Complete"/>.
/// Data to write goes in the pipeline's own buffers (<see cref="RentBuffer"/>): capacity + 1 of a fixed size, each free
/// again once written, so the memory in flight is exactly that whatever the data's size.
/// </summary>
public sealed class WriteBehind : IDisposable
{
    private readonly Channel<Action> _queue;
    private readonly Task _worker;
    private readonly Channel<byte[]> _free = Channel.CreateUnbounded<byte[]>();
    private readonly int _bufferCount;
    private int _allocated;
    private volatile bool _abandoned;

    /// <summary>A pipeline letting <paramref name="capacity"/> writes wait while one runs, with buffers of <paramref name="bufferBytes"/>.</summary>
    public WriteBehind(int capacity, int bufferBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(bufferBytes, 1);
        BufferBytes = bufferBytes;
        Capacity = capacity;
        _bufferCount = capacity + 1;
        _queue = Channel.CreateBounded<Action>(new BoundedChannelOptions(capacity) { SingleReader = true, SingleWriter = true, FullMode = BoundedChannelFullMode.Wait });
        _worker = Task.Factory.StartNew(Run, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    /// <summary>How many writes may wait while one runs (the pipeline has one buffer more than that).</summary>
    public int Capacity { get; }

    /// <summary>The size of each buffer <see cref="RentBuffer"/> gives.</summary>
    public int BufferBytes { get; }

    /// <summary>A buffer of <see cref="BufferBytes"/> for <see cref="EnqueueWrite"/>; blocks while all are waiting to be written.</summary>
    /// <exception cref="Exception">An earlier write failed: its exception, as thrown.</exception>
    public byte[] RentBuffer()
    {
        if (_free.Reader.TryRead(out byte[]? buffer))
        {
            return buffer;
        }
        if (_allocated < _bufferCount)
        {
            _allocated++;
            return new byte[BufferBytes];
        }
        var next = _free.Reader.ReadAsync().AsTask();
        Task.WaitAny(next, _worker);
        if (next.IsCompletedSuccessfully)
        {
            return next.Result;
        }
        _worker.GetAwaiter().GetResult();
        throw new InvalidOperationException("the write pipeline has ended; no buffer will be freed.");
    }

    /// <summary>Queues <paramref name="write"/> of the first <paramref name="length"/> bytes of <paramref name="buffer"/> (from <see cref="RentBuffer"/>), which is free again afterwards.</summary>
    /// <exception cref="Exception">An earlier write failed: its exception, as thrown.</exception>
    public void EnqueueWrite(byte[] buffer, int length, Action<ReadOnlyMemory<byte>> write)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        ArgumentNullException.ThrowIfNull(write);
        Enqueue(() =>
        {
            write(buffer.AsMemory(0, length));
            _free.Writer.TryWrite(buffer);
        });
    }

    /// <summary>Queues <paramref name="write"/> after the writes already queued; blocks while the queue is full.</summary>
    /// <exception cref="Exception">An earlier write failed: its exception, as thrown.</exception>
    public void Enqueue(Action write)
    {
        ArgumentNullException.ThrowIfNull(write);
        try
        {
            _queue.Writer.WriteAsync(write).AsTask().GetAwaiter().GetResult();
        }
        catch (ChannelClosedException)
        {
            _worker.GetAwaiter().GetResult();
            throw;
        }
    }

    /// <summary>Waits until every queued write has run.</summary>
    /// <exception cref="Exception">A write failed: its exception, as thrown.</exception>
    public void Complete()
    {
        _queue.Writer.TryComplete();
        _worker.GetAwaiter().GetResult();
    }

    /// <summary>
    /// Without <see cref="Complete"/> first (the producer failed): drops the queued writes and waits for the running one. Exceptions
    /// were reported by <see cref="Complete"/> or <see cref="Enqueue"/>, or are dropped with the output.
    /// </summary>
    public void Dispose()
    {
        _abandoned = true;
        _queue.Writer.TryComplete();
        try
        {
            _worker.Wait();
        }
        catch (AggregateException)
        {
            // The caller is already leaving on an exception of its own (or saw this one from Complete/Enqueue).
        }
    }

    private void Run()
    {
        var reader = _queue.Reader;
        try
        {
            while (reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
            {
                while (reader.TryRead(out var write))
                {
                    if (!_abandoned)
                    {
                        write();
                    }
                }
            }
        }
        catch (Exception e)
        {
            _queue.Writer.TryComplete(e);
            throw;
        }
    }
}
