namespace VmState.History;

/// <summary>The answer of a <see cref="HistoryQuery"/>: the captures where the predicate holds, oldest first.</summary>
/// <param name="Predicate">The predicate, in words.</param>
/// <param name="Hits">The captures where it holds, oldest first.</param>
/// <param name="Captures">How many captures were examined.</param>
/// <param name="PagesRead">Pages whose content was read (0: the answer came from the indexes and page maps alone).</param>
/// <param name="Unknown">Captures where the predicate could not be evaluated (no kernel found), with the reason.</param>
public sealed record HistoryFindResult(string Predicate, IReadOnlyList<HistoryFindHit> Hits, int Captures, long PagesRead, IReadOnlyList<HistoryFindHit> Unknown)
{
    /// <summary>The first capture where the predicate holds (null: none).</summary>
    public HistoryFindHit? First => Hits.Count > 0 ? Hits[0] : null;
}
