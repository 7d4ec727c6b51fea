namespace VmState.Live;

/// <summary>
/// An internal snapshot (HMP <c>savevm</c>) of a running QEMU, in its qcow2 disk, that leaves a running guest
/// running: <c>savevm</c> stops the guest and resumes it by itself, and this makes sure of it, on errors and
/// cancellation too.
/// </summary>
public static class SavevmSnapshot
{
    /// <summary>
    /// Takes the snapshot <paramref name="tag"/>. When the guest was running before, it is running afterwards: if
    /// QEMU left it stopped, it is resumed (with no cancellation, so a cancelled save still resumes); a failure to
    /// resume is passed to <paramref name="resumeFailed"/> instead of hiding the save's own outcome.
    /// </summary>
    /// <exception cref="QmpException">QEMU refused or failed the savevm.</exception>
    public static async Task TakeAsync(QmpClient qmp, string tag, Action<Exception>? resumeFailed = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(qmp);
        ArgumentNullException.ThrowIfNull(tag);
        bool wasRunning = await qmp.QueryStatusAsync(cancellationToken).ConfigureAwait(false) == "running";
        try
        {
            await qmp.SaveVmAsync(tag, null, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            if (wasRunning)
            {
                try
                {
                    if (await qmp.QueryStatusAsync(CancellationToken.None).ConfigureAwait(false) != "running")
                    {
                        await qmp.ContAsync(CancellationToken.None).ConfigureAwait(false);
                    }
                }
                catch (Exception e) when (e is IOException or LiveVmGoneException or TimeoutException or QmpException)
                {
                    resumeFailed?.Invoke(e);
                }
            }
        }
    }
}
