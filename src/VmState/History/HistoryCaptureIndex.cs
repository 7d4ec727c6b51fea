namespace VmState.History;

/// <summary>
/// What a capture's index holds, computed once when the capture is added (<see cref="HistoryStoreWriter"/>) so that
/// <c>history diff</c>, <c>history find</c> and <c>history list</c> answer without reading the capture's memory: how it
/// was taken, and what the Linux layer saw in it.
/// </summary>
/// <param name="Number">The capture's number.</param>
/// <param name="GuestPause">How long the guest was paused for the capture (null: unknown, e.g. an imported file).</param>
/// <param name="Wall">The capture's wall time, from the request to the last byte stored (null: unknown).</param>
/// <param name="KernelError">Why the Linux layer could not read the capture (no kernel found, corrupt data); null when it could.</param>
/// <param name="KernelTextAddress">The kernel's _text address (KASLR slide included), 0 without a kernel.</param>
/// <param name="Processes">The processes (thread-group leaders), in task-list order.</param>
/// <param name="Modules">The loaded modules.</param>
/// <param name="NetDevices">The network devices of the initial namespace.</param>
/// <param name="LogFirst">The sequence number of the oldest record still in the kernel log.</param>
/// <param name="LogNext">One past the sequence number of the newest record (LogFirst = LogNext: the log is empty).</param>
/// <param name="LogAfter">
/// The records kept in <paramref name="NewLogLines"/> are those with a sequence number of at least this: the previous
/// capture's <paramref name="LogNext"/> (0 for the first capture, or after a reboot), so each line is stored once.
/// </param>
/// <param name="NewLogLines">The records new since the previous capture, oldest first.</param>
public sealed record HistoryCaptureIndex(int Number, TimeSpan? GuestPause, TimeSpan? Wall, string? KernelError,
    ulong KernelTextAddress, IReadOnlyList<HistoryProcess> Processes, IReadOnlyList<HistoryModule> Modules,
    IReadOnlyList<HistoryNetDevice> NetDevices, ulong LogFirst, ulong LogNext, ulong LogAfter,
    IReadOnlyList<HistoryLogLine> NewLogLines);
