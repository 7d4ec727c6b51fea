using VmState.History;

namespace VmState;

/// <summary>
/// Predicates over a history store written in C# against the front door: each capture is opened as a <see cref="Vm"/>
/// (<c>STORE@N</c>) and handed to the predicate, for what <see cref="HistoryQuery"/> has no index for.
/// </summary>
public static class VmHistory
{
    /// <summary>
    /// The captures of <paramref name="store"/> where <paramref name="predicate"/> returns a detail (non-null), oldest
    /// first; a capture the predicate throws a <see cref="VmStateException"/> on is listed as unknown, with the message.
    /// </summary>
    /// <param name="store">The store.</param>
    /// <param name="description">The predicate in words, for the result.</param>
    /// <param name="predicate">Given each capture as a <see cref="Vm"/>: what it found there, or null when it does not hold.</param>
    /// <param name="options">How each capture is opened (kernel location, System.map); null for the defaults.</param>
    public static HistoryFindResult Find(HistoryStore store, string description, Func<Vm, string?> predicate, VmOpenOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(description);
        ArgumentNullException.ThrowIfNull(predicate);
        var hits = new List<HistoryFindHit>();
        var unknown = new List<HistoryFindHit>();
        foreach (HistoryCapture c in store.Captures)
        {
            using Vm vm = Vm.Open($"{store.Directory}@{c.Number}", options);
            try
            {
                if (predicate(vm) is string detail)
                {
                    hits.Add(new HistoryFindHit(c, detail));
                }
            }
            catch (VmStateException e)
            {
                unknown.Add(new HistoryFindHit(c, e.Message));
            }
        }

        return new HistoryFindResult(description, hits, store.Captures.Count, -1, unknown);
    }
}
