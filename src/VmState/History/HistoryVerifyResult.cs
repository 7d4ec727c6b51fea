namespace VmState.History;

/// <summary>What <see cref="HistoryStore.Verify"/> checked and the damage it found.</summary>
/// <param name="Captures">Captures the manifest lists.</param>
/// <param name="CapturesChecked">Captures whose file, page references and device state were sound.</param>
/// <param name="Pages">Unique pages the manifest commits.</param>
/// <param name="PagesChecked">Pages whose content was read back and matched its hash (the others are problems).</param>
/// <param name="Problems">Each problem found, naming the file and where in it; empty when the store is sound.</param>
public sealed record HistoryVerifyResult(int Captures, int CapturesChecked, long Pages, long PagesChecked, IReadOnlyList<string> Problems)
{
    /// <summary>True when nothing is damaged.</summary>
    public bool IsSound => Problems.Count == 0;
}
