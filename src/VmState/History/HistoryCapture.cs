namespace VmState.History;

/// <summary>One capture in a history store, as its manifest lists it.</summary>
/// <param name="Number">The capture's number in the store, from 1 (<c>STORE@N</c>).</param>
/// <param name="Time">When the state was captured (UTC).</param>
/// <param name="Source">Where it came from (the imported file, or the running VM).</param>
/// <param name="StreamBytes">The size of the migration stream it was read from.</param>
/// <param name="DataPages">Pages with content (stored in the packs, deduplicated).</param>
/// <param name="FillPages">Pages that are one byte repeated (zero pages), kept in the page map only.</param>
/// <param name="NewPages">Unique pages this capture added to the store.</param>
/// <param name="ChangedPages">Pages whose content differs from the previous capture (all pages with a record for the first).</param>
/// <param name="BytesAdded">Bytes this capture added to the store (packs, page index, capture file).</param>
public sealed record HistoryCapture(int Number, DateTimeOffset Time, string Source, long StreamBytes, long DataPages,
    long FillPages, long NewPages, long ChangedPages, long BytesAdded)
{
    /// <summary>The length of the capture's file (page map and device state).</summary>
    internal long FileLength { get; init; }

    /// <summary>XxHash128 of the capture's file.</summary>
    internal UInt128 FileHash { get; init; }
}
