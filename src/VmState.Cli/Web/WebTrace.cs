using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.AspNetCore.Http;
using VmState.Cli.Commands;
using VmState.Events;

namespace VmState.Cli.Web;

/// <summary>
/// The live event stream of a running source (<c>/api/s/N/trace/exec</c>, <c>/api/s/N/trace/break?symbol=NAME</c>):
/// a trace through the events library (<see cref="GdbTraceSession"/>, as <c>vmstate trace</c> runs it) whose events
/// go to the client as server-sent events while they happen, one JSON object each (the CLI's <c>--json</c> line).
/// A trace inserts breakpoints into the guest, so it needs <c>--allow-trace</c>; one runs per source at a time (a
/// second gets 409). It ends when the client goes or the server stops: the session then removes its breakpoints,
/// stops the gdbstub if it started one and leaves the guest running (a trace guard does it if the server is killed).
/// </summary>
internal static class WebTrace
{
    /// <summary>The most events waiting for a slow client; past it the oldest are dropped and counted.</summary>
    public const int MaxQueued = 1024;

    /// <summary>How often a comment line is written while nothing happens (a gone client is noticed by then).</summary>
    public static readonly TimeSpan KeepAlive = TimeSpan.FromSeconds(1);

    /// <summary>The kinds of trace a client may start.</summary>
    public static bool IsKind(string kind) => kind is "exec" or "break";

    /// <summary>Runs the trace <paramref name="kind"/> on <paramref name="source"/> and streams its events until the client or the server goes.</summary>
    public static async Task StreamAsync(WebServer server, HttpContext context, WebSource source, string kind)
    {
        if (!server.Options.AllowTrace)
        {
            throw new WebRequestException(403, "tracing inserts breakpoints into the guest: start the server with --allow-trace");
        }

        if (!source.IsLive)
        {
            throw new WebRequestException(409, source.Vm is null ? $"source {source.Index} is not a VM" : "a snapshot does not run: only running VMs can be traced");
        }

        string? symbol = kind == "break" ? WebParameters.Symbol(context.Request.Query["symbol"]) : null;
        if (!source.TryBeginTrace())
        {
            throw new WebRequestException(409, $"a trace is already running on source {source.Index} (one at a time per VM)");
        }

        try
        {
            await RunAsync(server, context, source, kind, symbol).ConfigureAwait(false);
        }
        finally
        {
            source.EndTrace();
        }
    }

    private static async Task RunAsync(WebServer server, HttpContext context, WebSource source, string kind, string? symbol)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, server.Stopping);
        CancellationToken token = linked.Token;
        var queue = Channel.CreateBounded<string>(new BoundedChannelOptions(MaxQueued) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true, SingleWriter = true });
        long dropped = 0;
        var options = new GdbTraceOptions { GuardCommand = TraceCommand.SelfCommand("trace-guard") };

        // Set up under the source's gate (the kernel, the symbol), so no page reads the guest while the stub stops it.
        GdbTraceSession session = await source.UseAsync(async vm =>
        {
            GdbTraceSession s = await GdbTraceSession.StartAsync(vm.Live!, vm.Linux.Kernel, options, token).ConfigureAwait(false);
            try
            {
                if (kind == "exec")
                {
                    ExecTracer.Subscribe(s, e =>
                    {
                        Enqueue("exec", w => TraceCommand.WriteExecJson(w, e));
                        return TraceAction.Continue;
                    });
                }
                else
                {
                    ulong address = vm.Linux.Symbol(symbol!);
                    s.Subscribe(address, symbol!, hit =>
                    {
                        Enqueue("hit", w => TraceCommand.WriteHitJson(w, hit, []));
                        return TraceAction.Continue;
                    });
                }

                return s;
            }
            catch
            {
                s.Dispose();
                throw;
            }
        }, token).ConfigureAwait(false);

        Task<TraceSummary>? run = null;
        try
        {
            run = session.RunAsync((Func<BreakpointHit, TraceAction>?)null, cancellationToken: token);
            HttpResponse response = context.Response;
            response.ContentType = "text/event-stream";
            response.Headers.CacheControl = "no-cache";
            await WriteEventAsync(response, "started", Json(w =>
            {
                w.WriteString("kind", kind);
                w.WriteString("breakpoint", kind == "exec" ? ExecTracer.Function : symbol);
                w.WriteString("stub", session.StubEndpoint);
                w.WriteBoolean("started_stub", session.StartedStub);
                w.WriteBoolean("kvm", session.IsKvm);
            }), token).ConfigureAwait(false);

            while (!run.IsCompleted)
            {
                using var tick = CancellationTokenSource.CreateLinkedTokenSource(token);
                tick.CancelAfter(KeepAlive);
                var sb = new StringBuilder();
                try
                {
                    if (await queue.Reader.WaitToReadAsync(tick.Token).ConfigureAwait(false))
                    {
                        while (queue.Reader.TryRead(out string? e))
                        {
                            sb.Append(e);
                        }
                    }
                }
                catch (OperationCanceledException) when (!token.IsCancellationRequested)
                {
                    sb.Append(": ping\n\n");
                }

                await response.WriteAsync(sb.ToString(), token).ConfigureAwait(false);
                await response.Body.FlushAsync(token).ConfigureAwait(false);
            }

            // The trace ended on its own (the guest's stub went away, a handler failed): say why, then close.
            TraceSummary summary = await run.ConfigureAwait(false);
            while (queue.Reader.TryRead(out string? e))
            {
                await response.WriteAsync(e, token).ConfigureAwait(false);
            }

            await WriteEventAsync(response, "end", Json(w =>
            {
                w.WriteNumber("hits", summary.Hits);
                w.WriteNumber("dropped", Interlocked.Read(ref dropped));
                w.WriteString("reason", summary.Reason);
            }), token).ConfigureAwait(false);
        }
        finally
        {
            await linked.CancelAsync().ConfigureAwait(false);
            if (run is not null)
            {
                try
                {
                    await run.ConfigureAwait(false);
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    // The client is gone or the server stops; the session's disposal below still cleans up.
                }
            }

            // Breakpoints out, the stub stopped if the session started it, the guest running.
            session.Dispose();
        }

        void Enqueue(string name, Action<Utf8JsonWriter> write)
        {
            // One writer (the trace thread): a full queue now means the write below drops the oldest event.
            if (queue.Reader.Count >= MaxQueued)
            {
                Interlocked.Increment(ref dropped);
            }

            queue.Writer.TryWrite($"event: {name}\ndata: {Json(write)}\n\n");
        }
    }

    private static async Task WriteEventAsync(HttpResponse response, string name, string data, CancellationToken token)
    {
        await response.WriteAsync($"event: {name}\ndata: {data}\n\n", token).ConfigureAwait(false);
        await response.Body.FlushAsync(token).ConfigureAwait(false);
    }

    /// <summary>One JSON object on one line (the default encoder: no raw '&lt;' or control character reaches a page).</summary>
    private static string Json(Action<Utf8JsonWriter> body)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            body(w);
            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }
}
