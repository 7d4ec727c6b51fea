using VmState.Live;

namespace VmState;

/// <summary>
/// Capability of a running VM (<c>vm.TryGet&lt;ISnapshotting&gt;</c>): saving its whole state to a file that
/// <see cref="Vm.Open"/> reads back, like any snapshot, or streaming it into this process.
/// </summary>
public interface ISnapshotting
{
    /// <summary>
    /// Saves the VM's state to <paramref name="path"/> as a migration stream (temporary name, then rename). With
    /// <paramref name="background"/> the guest keeps running where QEMU can snapshot in the background; otherwise, or
    /// where it cannot, the guest is paused for the save. A guest that was running is running again afterwards.
    /// </summary>
    /// <returns>How the save was made, its size and how long it took.</returns>
    /// <exception cref="QmpException">QEMU refused the migration.</exception>
    /// <exception cref="IOException">The migration failed, or the file cannot be written.</exception>
    Task<SaveResult> SaveAsync(string path, bool background = true, CancellationToken cancellationToken = default);

    /// <summary>
    /// Captures the VM's state into this process: the migration stream is handed to <paramref name="consumer"/> as a
    /// forward-only <see cref="Stream"/> while QEMU writes it (a background snapshot where QEMU can, else a pause), never
    /// through a file. The guest is running again and QEMU's migration is not active on every path, the consumer
    /// throwing and cancellation included.
    /// </summary>
    /// <returns>How the capture was made, its size, the guest pause and the wall time.</returns>
    /// <exception cref="QmpException">QEMU refused the migration.</exception>
    /// <exception cref="IOException">The migration failed.</exception>
    Task<SaveResult> CaptureAsync(Func<Stream, CancellationToken, Task> consumer, CancellationToken cancellationToken = default);
}
