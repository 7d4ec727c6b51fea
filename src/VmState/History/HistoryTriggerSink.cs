using VmState.Live;

namespace VmState.History;

/// <summary>
/// The timeline-store sink of <c>vmstate agent --store DIR</c>: each guest-requested snapshot becomes a capture whose
/// source names the request (<c>guest request "LABEL" (nonce N)</c>, shown by <c>history list</c>), streamed straight
/// into the store and indexed; its id is <c>@N</c>, the capture's number.
/// </summary>
/// <param name="writer">The store, open for writing (this process holds its lock).</param>
public sealed class HistoryTriggerSink(HistoryStoreWriter writer) : ITriggerSink
{
    /// <summary>The capture source text for a request.</summary>
    public static string SourceOf(TriggerRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        return $"guest request \"{request.Label}\" (nonce {request.Nonce})";
    }

    /// <inheritdoc />
    public async Task<(string Id, string Location, SaveResult Save)> CaptureAsync(QmpClient qmp, TriggerRequest request, DateTimeOffset received, bool live, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(qmp);
        ArgumentNullException.ThrowIfNull(request);
        HistoryCapture? capture = null;
        bool indexed = writer.IndexOnAppend;
        writer.IndexOnAppend = false;
        SaveResult save;
        try
        {
            save = await qmp.CaptureStateAsync(
                (stream, ct) => Task.Run(() => capture = writer.Append(stream, SourceOf(request), received, cancellationToken: ct), ct),
                background: live,
                cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            writer.IndexOnAppend = indexed;
        }

        // Indexed once QEMU is done, as the recorder does: it costs the guest nothing.
        writer.IndexCapture(capture!, save.GuestPause, save.Elapsed);
        return ($"@{capture!.Number}", $"{writer.Directory}@{capture.Number}", save);
    }
}
