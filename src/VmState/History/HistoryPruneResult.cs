namespace VmState.History;

/// <summary>What <see cref="HistoryStoreWriter.Prune"/> did.</summary>
/// <param name="Kept">The captures kept (their numbers unchanged).</param>
/// <param name="Dropped">The captures dropped.</param>
/// <param name="PagesBefore">Unique pages before.</param>
/// <param name="PagesAfter">Unique pages after: those the kept captures reference.</param>
/// <param name="BytesBefore">The store's size before.</param>
/// <param name="BytesAfter">The store's size after.</param>
public sealed record HistoryPruneResult(IReadOnlyList<HistoryCapture> Kept, IReadOnlyList<HistoryCapture> Dropped, long PagesBefore, long PagesAfter, long BytesBefore, long BytesAfter);
