namespace VmState.Replay;

/// <summary>A recording or replay that has started.</summary>
/// <param name="ProcessId">QEMU's process id.</param>
/// <param name="QmpSocket">The QMP socket for the user's live commands (<c>vmstate ps --qmp</c> and the others).</param>
/// <param name="Directory">The run's directory: the recording, or the replay's work directory (console files).</param>
/// <param name="GdbPort">QEMU's gdbstub port on 127.0.0.1, when asked for.</param>
public sealed record ReplayRunInfo(int ProcessId, string QmpSocket, string Directory, int? GdbPort);
