namespace VmState.History;

/// <summary>What changed from one capture of a history store to another (<see cref="HistoryStore.Diff"/>).</summary>
/// <param name="From">The earlier capture.</param>
/// <param name="To">The later capture.</param>
/// <param name="Started">Processes in <paramref name="To"/> that <paramref name="From"/> does not have (pid and start time tell a reused pid apart).</param>
/// <param name="Exited">Processes in <paramref name="From"/> that <paramref name="To"/> no longer has.</param>
/// <param name="Loaded">Modules loaded since.</param>
/// <param name="Unloaded">Modules unloaded since.</param>
/// <param name="NetDevicesAdded">Network devices that appeared.</param>
/// <param name="NetDevicesRemoved">Network devices that went away.</param>
/// <param name="NetDevicesChanged">Network devices whose MAC, flags or MTU changed, as they are in <paramref name="To"/>.</param>
/// <param name="NewLogLines">Kernel log lines written after <paramref name="From"/> up to <paramref name="To"/>, oldest first.</param>
/// <param name="LogComplete">False when some new lines are not known (the ring buffer wrapped between captures).</param>
/// <param name="ChangedPages">Guest pages whose content differs.</param>
/// <param name="KernelChangedPages">Changed pages not mapped by any process's user address space (kernel memory, page cache, free pages).</param>
/// <param name="ProcessPages">Per process of <paramref name="To"/> with user memory: its mapped and changed pages, most changed first.</param>
/// <param name="ProcessPagesError">Why the per-process counts could not be made (no kernel found); null when they were.</param>
/// <param name="KernelError">Why a capture's kernel lists are not known (see <see cref="HistoryCaptureIndex.KernelError"/>); null when both are.</param>
public sealed record HistoryDiff(HistoryCapture From, HistoryCapture To,
    IReadOnlyList<HistoryProcess> Started, IReadOnlyList<HistoryProcess> Exited,
    IReadOnlyList<HistoryModule> Loaded, IReadOnlyList<HistoryModule> Unloaded,
    IReadOnlyList<HistoryNetDevice> NetDevicesAdded, IReadOnlyList<HistoryNetDevice> NetDevicesRemoved, IReadOnlyList<HistoryNetDevice> NetDevicesChanged,
    IReadOnlyList<HistoryLogLine> NewLogLines, bool LogComplete,
    long ChangedPages, long KernelChangedPages, IReadOnlyList<HistoryProcessPages> ProcessPages, string? ProcessPagesError, string? KernelError);
