namespace VmState.History;

/// <summary>Pages of one process's memory that changed between two captures (<see cref="HistoryDiff.ProcessPages"/>).</summary>
/// <param name="Pid">The process id.</param>
/// <param name="Name">Its name (as /proc shows it).</param>
/// <param name="MappedPages">Physical pages its user address space maps in the later capture.</param>
/// <param name="ChangedPages">Of those, the pages whose content differs from the earlier capture.</param>
public sealed record HistoryProcessPages(int Pid, string Name, long MappedPages, long ChangedPages);
