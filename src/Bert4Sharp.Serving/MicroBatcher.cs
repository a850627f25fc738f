namespace Bert4Sharp.Serving;

using System.Threading.Channels;

/// <summary>
/// Dynamic micro-batching: concurrent requests' inputs are gathered into one call of a batch function, up to
/// <c>maxBatch</c> inputs or until <c>maxDelay</c> has passed since the first one arrived, on one worker thread (so the
/// model is never entered from two requests at once). A request cancelled while it waits is dropped from its batch;
/// an exception in the batch function fails every request of that batch.
/// </summary>
/// <typeparam name="TIn">One input (a text).</typeparam>
/// <typeparam name="TOut">Its result (a vector).</typeparam>
public sealed class MicroBatcher<TIn, TOut> : IDisposable
{
    sealed record Work(IReadOnlyList<TIn> Inputs, TaskCompletionSource<TOut[]> Done, CancellationToken Token);

    readonly Channel<Work> queue = Channel.CreateUnbounded<Work>(new UnboundedChannelOptions { SingleReader = true });
    readonly Func<IReadOnlyList<TIn>, TOut[]> run;
    readonly Thread worker;
    long batches, inputs, largest;

    /// <summary>Starts the worker.</summary>
    /// <param name="run">Inputs → one result per input, in order.</param>
    /// <param name="maxBatch">Inputs per call at most (1: no batching across requests).</param>
    /// <param name="maxDelay">How long the first request of a batch waits for others.</param>
    public MicroBatcher(Func<IReadOnlyList<TIn>, TOut[]> run, int maxBatch, TimeSpan maxDelay)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatch, 1);
        this.run = run;
        MaxBatch = maxBatch;
        MaxDelay = maxDelay;
        worker = new Thread(Loop) { IsBackground = true, Name = "b4s micro-batcher" };
        worker.Start();
    }

    /// <summary>Inputs per call at most.</summary>
    public int MaxBatch { get; }
    /// <summary>How long a batch waits to fill.</summary>
    public TimeSpan MaxDelay { get; }
    /// <summary>Calls of the batch function so far.</summary>
    public long Batches => Interlocked.Read(ref batches);
    /// <summary>Inputs processed so far.</summary>
    public long Inputs => Interlocked.Read(ref inputs);
    /// <summary>The largest batch so far.</summary>
    public long Largest => Interlocked.Read(ref largest);

    /// <summary>Queues <paramref name="items"/> (kept together in one batch) and waits for their results.</summary>
    public Task<TOut[]> RunAsync(IReadOnlyList<TIn> items, CancellationToken cancellation = default)
    {
        var done = new TaskCompletionSource<TOut[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        if (items.Count == 0) { done.SetResult([]); return done.Task; }
        if (!queue.Writer.TryWrite(new Work(items, done, cancellation))) done.SetException(new ObjectDisposedException(nameof(MicroBatcher<TIn, TOut>)));
        return done.Task.WaitAsync(cancellation);
    }

    void Loop()
    {
        var reader = queue.Reader;
        while (reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
        {
            if (!reader.TryRead(out var first)) continue;
            var batch = new List<Work> { first };
            int count = first.Inputs.Count;
            var deadline = DateTime.UtcNow + MaxDelay;
            while (count < MaxBatch)
            {
                if (reader.TryPeek(out var next))
                {
                    if (count + next.Inputs.Count > MaxBatch) break;              // the next request starts the next batch
                    reader.TryRead(out next);
                    batch.Add(next!);
                    count += next!.Inputs.Count;
                    continue;
                }
                var left = deadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero) break;
                using var wait = new CancellationTokenSource(left);
                try { if (!reader.WaitToReadAsync(wait.Token).AsTask().GetAwaiter().GetResult()) break; }
                catch (OperationCanceledException) { break; }
            }
            var live = batch.Where(w => !w.Token.IsCancellationRequested).ToList();
            foreach (var w in batch.Except(live)) w.Done.TrySetCanceled(w.Token);
            if (live.Count == 0) continue;
            try
            {
                var all = live.SelectMany(w => w.Inputs).ToList();
                var results = run(all);
                if (results.Length != all.Count) throw new InvalidOperationException($"the batch function returned {results.Length} results for {all.Count} inputs");
                Interlocked.Increment(ref batches);
                Interlocked.Add(ref inputs, all.Count);
                if (all.Count > Interlocked.Read(ref largest)) Interlocked.Exchange(ref largest, all.Count);
                int at = 0;
                foreach (var w in live)
                {
                    w.Done.TrySetResult(results[at..(at + w.Inputs.Count)]);
                    at += w.Inputs.Count;
                }
            }
            catch (Exception e)
            {
                foreach (var w in live) w.Done.TrySetException(e);
            }
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        queue.Writer.TryComplete();
        worker.Join(TimeSpan.FromSeconds(30));
    }
}
