using System.Diagnostics;
using System.Text.Json;
using VmState.IO;

namespace VmState.Live;

/// <summary>Where a guest-triggered snapshot goes: a directory of stream files, or a timeline store.</summary>
public interface ITriggerSink
{
    /// <summary>
    /// Saves the VM's state for <paramref name="request"/>; the VM is stopped already unless <paramref name="live"/>
    /// (then the save keeps it running: a background snapshot, the state at its start).
    /// </summary>
    /// <returns>The snapshot's id (sent to the guest), where it is, and how it was saved.</returns>
    Task<(string Id, string Location, SaveResult Save)> CaptureAsync(QmpClient qmp, TriggerRequest request, DateTimeOffset received, bool live, CancellationToken cancellationToken);
}

/// <summary>One snapshot taken at a guest's request.</summary>
/// <param name="Request">The guest's request (nonce and label).</param>
/// <param name="Id">The snapshot's id, as answered to the guest.</param>
/// <param name="Location">Where the snapshot is (a file, or a store capture).</param>
/// <param name="Received">When the agent read the request (this host's clock).</param>
/// <param name="Stopped">QEMU's timestamp of the VM's STOP for it (null with a live snapshot, or when the VM was not running).</param>
/// <param name="Answered">When the answer was written to the guest.</param>
/// <param name="Save">How the state was saved.</param>
public sealed record TriggeredSnapshot(TriggerRequest Request, string Id, string Location, DateTimeOffset Received, DateTimeOffset? Stopped, DateTimeOffset Answered, SaveResult Save)
{
    /// <summary>How many filesystems the guest agent froze for the snapshot (null without <c>--freeze</c>).</summary>
    public int? FrozenFilesystems { get; init; }

    /// <summary>From the request read to the VM stopped, when it was stopped for it.</summary>
    public TimeSpan? StopLatency => Stopped - Received;

    /// <summary>Writes the snapshot as a JSON object (the <c>agent --json</c> lines and the directory sink's metadata).</summary>
    public void WriteJson(Utf8JsonWriter w)
    {
        ArgumentNullException.ThrowIfNull(w);
        w.WriteStartObject();
        w.WriteString("id", Id);
        w.WriteString("label", Request.Label);
        w.WriteString("nonce", Request.Nonce);
        w.WriteString("location", Location);
        w.WriteString("received", Received.UtcDateTime.ToString("O", System.Globalization.CultureInfo.InvariantCulture));
        w.WriteString("stopped", Stopped?.UtcDateTime.ToString("O", System.Globalization.CultureInfo.InvariantCulture));
        w.WriteString("answered", Answered.UtcDateTime.ToString("O", System.Globalization.CultureInfo.InvariantCulture));
        if (StopLatency is TimeSpan l)
        {
            w.WriteNumber("stopLatencyMs", Math.Round(l.TotalMilliseconds, 3));
        }
        else
        {
            w.WriteNull("stopLatencyMs");
        }

        w.WriteString("mode", Save.Mode switch
        {
            SaveMode.BackgroundSnapshot => "background-snapshot",
            SaveMode.Pause => "pause",
            _ => "paused",
        });
        w.WriteNumber("bytes", Save.Bytes);
        if (FrozenFilesystems is int frozen)
        {
            w.WriteNumber("frozenFilesystems", frozen);
        }

        w.WriteEndObject();
    }
}

/// <summary>What the agent did with a request it could not carry out (answered with <c>ERR</c>).</summary>
/// <param name="Nonce">The request's nonce, when it could be read.</param>
/// <param name="Reason">Why.</param>
public sealed record TriggerRefusal(string? Nonce, string Reason);

/// <summary>Options of <see cref="TriggerAgent.ServeAsync"/>.</summary>
public sealed record TriggerAgentOptions
{
    /// <summary>Keep the guest running during the save (QEMU's background snapshot) instead of stopping it for the save.</summary>
    public bool Live { get; init; }

    /// <summary>Stop serving after this many snapshots; null serves until cancelled or the VM goes away.</summary>
    public int? Count { get; init; }

    /// <summary>
    /// Freeze the guest's filesystems through its guest agent before the VM is stopped, and thaw them once it runs
    /// again (after the answer): the snapshot then holds filesystems with nothing half-written.
    /// </summary>
    public GuestAgent? Freeze { get; init; }
}

/// <summary>
/// Serves a guest's snapshot requests on its trigger port (<see cref="TriggerChannel"/>): for each request line the VM
/// is stopped at once (QMP <c>stop</c>; its STOP event's timestamp kept), its state saved by the sink, the answer
/// <c>OK &lt;nonce&gt; &lt;id&gt;</c> written, and the VM resumed — so the answer is still unread when the state is
/// taken, and in the snapshot the requesting process is asleep waiting for it, just after its request.
/// With <see cref="TriggerAgentOptions.Live"/> the save is a background snapshot (the VM runs again once its devices
/// are saved; the requester still waits, as the answer comes after the save). A malformed request, or a save that
/// fails, is answered with <c>ERR &lt;nonce&gt; &lt;reason&gt;</c> and the agent goes on; the VM runs again on every
/// path.
/// </summary>
public static class TriggerAgent
{
    /// <summary>Serves requests until the count is reached, <paramref name="cancellationToken"/> is cancelled or the port closes.</summary>
    /// <param name="qmp">The VM's QMP connection.</param>
    /// <param name="channel">Its trigger port.</param>
    /// <param name="sink">Where snapshots go.</param>
    /// <param name="options">Live saves, a count.</param>
    /// <param name="onSnapshot">Called after each snapshot was answered.</param>
    /// <param name="onRefusal">Called for each request answered with ERR.</param>
    /// <param name="cancellationToken">Stops serving; a snapshot in progress is finished and answered first.</param>
    /// <returns>The snapshots taken.</returns>
    /// <exception cref="LiveVmGoneException">QEMU exited.</exception>
    public static async Task<IReadOnlyList<TriggeredSnapshot>> ServeAsync(QmpClient qmp, TriggerChannel channel, ITriggerSink sink, TriggerAgentOptions options, Action<TriggeredSnapshot>? onSnapshot = null, Action<TriggerRefusal>? onRefusal = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(qmp);
        ArgumentNullException.ThrowIfNull(channel);
        ArgumentNullException.ThrowIfNull(sink);
        ArgumentNullException.ThrowIfNull(options);
        var reader = new TriggerLineReader(channel.Requests);
        var taken = new List<TriggeredSnapshot>();
        while (options.Count is not int n || taken.Count < n)
        {
            byte[]? line;
            TriggerRequest request;
            try
            {
                line = await reader.ReadLineAsync(cancellationToken).ConfigureAwait(false);
                if (line is null)
                {
                    break;
                }

                request = TriggerRequest.Parse(line);
            }
            catch (TriggerProtocolException e)
            {
                await RefuseAsync(channel, new TriggerRefusal(e.Nonce, e.Message), onRefusal).ConfigureAwait(false);
                continue;
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                break;
            }
            catch (IOException)
            {
                // The chardev's connection closed (QEMU exited or removed the port).
                break;
            }

            DateTimeOffset received = DateTimeOffset.UtcNow;
            TriggeredSnapshot? snapshot = null;
            try
            {
                // A request being served is finished even when cancelled: the guest gets its answer.
                snapshot = await TakeAsync(qmp, channel, sink, request, received, options).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or QmpException or TimeoutException or UnauthorizedAccessException or VmStateException && e is not LiveVmGoneException)
            {
                await RefuseAsync(channel, new TriggerRefusal(request.Nonce, $"snapshot failed: {e.Message}"), onRefusal).ConfigureAwait(false);
                continue;
            }

            taken.Add(snapshot);
            onSnapshot?.Invoke(snapshot);
            if (cancellationToken.IsCancellationRequested)
            {
                break;
            }
        }

        return taken;
    }

    private static async Task<TriggeredSnapshot> TakeAsync(QmpClient qmp, TriggerChannel channel, ITriggerSink sink, TriggerRequest request, DateTimeOffset received, TriggerAgentOptions options)
    {
        int? frozen = null;
        if (options.Freeze is GuestAgent guest)
        {
            // While the VM runs: the guest flushes and freezes its filesystems; the requester still waits.
            frozen = await guest.FreezeAsync(CancellationToken.None).ConfigureAwait(false);
        }

        try
        {
            TriggeredSnapshot taken = await StopAndSaveAsync(qmp, channel, sink, request, received, options.Live).ConfigureAwait(false);
            return taken with { FrozenFilesystems = frozen };
        }
        finally
        {
            if (frozen is not null)
            {
                // The VM runs again here (StopAndSaveAsync resumed it on every path): thawed on every path too.
                await options.Freeze!.ThawAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }
    }

    private static async Task<TriggeredSnapshot> StopAndSaveAsync(QmpClient qmp, TriggerChannel channel, ITriggerSink sink, TriggerRequest request, DateTimeOffset received, bool live)
    {
        bool wasRunning = false;
        bool stoppedHere = false;
        try
        {
            DateTimeOffset? stopped = null;
            if (!live)
            {
                // Stop first, then ask anything else: the stop is what the request's latency is.
                await qmp.StopAsync(CancellationToken.None).ConfigureAwait(false);
                stoppedHere = true;
                QmpEvent stop = await qmp.WaitForEventAsync("STOP", TimeSpan.FromSeconds(5), CancellationToken.None).ConfigureAwait(false);
                while (stop.Timestamp < received.AddSeconds(-1))
                {
                    stop = await qmp.WaitForEventAsync("STOP", TimeSpan.FromSeconds(5), CancellationToken.None).ConfigureAwait(false);
                }

                stopped = stop.Timestamp;
                wasRunning = true;
            }

            (string id, string location, SaveResult save) = await sink.CaptureAsync(qmp, request, received, live, CancellationToken.None).ConfigureAwait(false);
            await channel.WriteLineAsync(TriggerRequest.Ok(request.Nonce, id), CancellationToken.None).ConfigureAwait(false);
            return new TriggeredSnapshot(request, id, location, received, stopped, DateTimeOffset.UtcNow, save);
        }
        catch (TimeoutException) when (stoppedHere)
        {
            // No STOP event: QEMU took "stop" on a VM that was not running (already paused by someone else).
            throw new IOException("the VM did not report stopping (was it paused already?)");
        }
        finally
        {
            if (stoppedHere)
            {
                try
                {
                    if (await qmp.QueryStatusAsync(CancellationToken.None).ConfigureAwait(false) != "running" && wasRunning)
                    {
                        await qmp.ContAsync(CancellationToken.None).ConfigureAwait(false);
                    }
                }
                catch (Exception e) when (e is QmpException or IOException or TimeoutException)
                {
                }
            }
        }
    }

    private static async Task RefuseAsync(TriggerChannel channel, TriggerRefusal refusal, Action<TriggerRefusal>? onRefusal)
    {
        try
        {
            await channel.WriteLineAsync(TriggerRequest.Error(refusal.Nonce, refusal.Reason), CancellationToken.None).ConfigureAwait(false);
        }
        catch (IOException)
        {
        }

        onRefusal?.Invoke(refusal);
    }
}

/// <summary>
/// The directory sink of <c>vmstate agent -o DIR</c>: each snapshot is <c>trigger-NNNN.mig</c> (a QEMU migration
/// stream, written atomically and owner-only) with <c>trigger-NNNN.json</c> beside it (label, nonce, times), in a
/// directory created owner-only; numbering goes on after the highest number already there.
/// </summary>
public sealed class DirectoryTriggerSink : ITriggerSink
{
    private readonly string _directory;
    private int _next;

    /// <summary>Writes into <paramref name="directory"/> (created when missing).</summary>
    public DirectoryTriggerSink(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        PrivateDirectory.Create(directory);
        _directory = directory;
        _next = Directory.EnumerateFiles(directory, "trigger-*.mig")
            .Select(f => int.TryParse(Path.GetFileNameWithoutExtension(f)["trigger-".Length..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int k) ? k : 0)
            .DefaultIfEmpty(0).Max() + 1;
    }

    /// <inheritdoc />
    public async Task<(string Id, string Location, SaveResult Save)> CaptureAsync(QmpClient qmp, TriggerRequest request, DateTimeOffset received, bool live, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(qmp);
        ArgumentNullException.ThrowIfNull(request);
        string id = $"trigger-{_next++:D4}";
        string file = Path.Combine(_directory, id + ".mig");
        SaveResult save = await qmp.SaveStateToFileAsync(file, live, cancellationToken).ConfigureAwait(false);
        return (id, file, save);
    }

    /// <summary>Writes <c>ID.json</c> beside the snapshot (atomically, owner-only).</summary>
    public void WriteMetadata(TriggeredSnapshot snapshot)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        OutputFile.Write(Path.Combine(_directory, snapshot.Id + ".json"), OutputRules.None, s =>
        {
            using var w = new Utf8JsonWriter(s, new JsonWriterOptions { Indented = true });
            snapshot.WriteJson(w);
        });
    }
}
