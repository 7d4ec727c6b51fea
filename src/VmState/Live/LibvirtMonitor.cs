using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace VmState.Live;

/// <summary>
/// The QEMU monitor of one running libvirt domain, through libvirt's passthrough: each QMP command is one
/// <c>virDomainQemuMonitorCommandWithFiles</c> call (file descriptors travel with it, as SCM_RIGHTS do on a QMP
/// socket), and QEMU's events arrive through <c>virConnectDomainQemuMonitorEventRegister</c>. libvirt marks a domain
/// whose monitor is used this way as tainted ("custom-monitor" in its log); nothing else changes for it.
/// </summary>
internal sealed class LibvirtMonitor : IDisposable
{
    // Callbacks find their monitor by a number, never by a pointer into managed memory: a callback that races with
    // Dispose finds nothing instead of a freed handle.
    private static readonly ConcurrentDictionary<long, LibvirtMonitor> s_live = new();
    private static long s_nextKey;
    private readonly LibvirtConnection _connection;
    private readonly Action<QmpEvent> _onEvent;
    private readonly Action<Exception> _onGone;
    private readonly long _key;
    private nint _domain;
    private int _monitorCallback = -1;
    private int _lifecycleCallback = -1;
    private bool _closeCallback;

    private LibvirtMonitor(LibvirtConnection connection, nint domain, LibvirtDomainInfo info, Action<QmpEvent> onEvent, Action<Exception> onGone)
    {
        _connection = connection;
        _domain = domain;
        Domain = info;
        _onEvent = onEvent;
        _onGone = onGone;
        _key = Interlocked.Increment(ref s_nextKey);
    }

    /// <summary>The domain as it was when attached.</summary>
    public LibvirtDomainInfo Domain { get; }

    /// <summary>The libvirt URI.</summary>
    public string Uri => _connection.Uri;

    /// <summary>
    /// Opens <paramref name="uri"/>, finds the running domain and subscribes to its QEMU events and its lifecycle.
    /// Blocking (libvirt's calls are); the connection is owned.
    /// </summary>
    public static LibvirtMonitor Open(string uri, string domain, Action<QmpEvent> onEvent, Action<Exception> onGone)
    {
        LibvirtConnection connection = LibvirtConnection.Open(uri);
        nint d = 0;
        LibvirtMonitor? monitor = null;
        try
        {
            d = connection.LookUp(domain);
            LibvirtDomainInfo info = connection.Describe(d);
            if (info.Id is null)
            {
                throw new IOException($"libvirt domain {info.Name} at {uri} is not running (state: {info.State}); start it, or open one of its saved files");
            }

            monitor = new LibvirtMonitor(connection, d, info, onEvent, onGone);
            d = 0;
            monitor.Subscribe();
            return monitor;
        }
        catch
        {
            if (monitor is not null)
            {
                monitor.Dispose();
            }
            else
            {
                if (d != 0)
                {
                    _ = LibvirtNative.virDomainFree(d);
                }

                connection.Dispose();
            }

            throw;
        }
    }

    /// <summary>
    /// Sends one QMP command (a JSON object with "execute" and "arguments") and returns QEMU's whole reply object;
    /// <paramref name="descriptor"/>, when given, goes with it. Blocking.
    /// </summary>
    public unsafe string Execute(string command, string json, SafeHandle? descriptor)
    {
        nint domain = Volatile.Read(ref _domain);
        ObjectDisposedException.ThrowIf(domain == 0, this);
        bool added = false;
        byte* result = null;
        uint outCount = 0;
        int* outFiles = null;
        int rc;
        try
        {
            if (descriptor is null)
            {
                rc = LibvirtNative.virDomainQemuMonitorCommandWithFiles(domain, json, 0, null, &outCount, &outFiles, &result, 0);
            }
            else
            {
                descriptor.DangerousAddRef(ref added);
                int fd = (int)descriptor.DangerousGetHandle();
                rc = LibvirtNative.virDomainQemuMonitorCommandWithFiles(domain, json, 1, &fd, &outCount, &outFiles, &result, 0);
            }
        }
        finally
        {
            if (added)
            {
                descriptor!.DangerousRelease();
            }
        }

        if (outFiles is not null)
        {
            // No QMP command this library sends returns descriptors; any that came are closed, not leaked.
            for (uint i = 0; i < outCount; i++)
            {
                _ = LibvirtNative.close(outFiles[i]);
            }

            LibvirtNative.free(outFiles);
        }

        if (rc < 0)
        {
            LibvirtNative.free(result);
            (int _, string message) = LibvirtNative.LastError();
            if (LibvirtNative.virDomainIsActive(domain) == 0)
            {
                throw new LiveVmGoneException(Describe(), command, $"libvirt domain {Domain.Name} is no longer running: {message}");
            }

            throw new IOException($"libvirt refused {command} for domain {Domain.Name}: {message}");
        }

        return LibvirtNative.TakeText(result) ?? "{}";
    }

    /// <summary>
    /// Sends one command to the guest agent (qemu-ga) through libvirt, which holds the agent's channel; returns the
    /// agent's whole reply object. Blocking, bounded by <paramref name="timeoutSeconds"/>.
    /// </summary>
    public unsafe string AgentCommand(string command, string json, int timeoutSeconds)
    {
        nint domain = Volatile.Read(ref _domain);
        ObjectDisposedException.ThrowIf(domain == 0, this);
        byte* result = LibvirtNative.virDomainQemuAgentCommand(domain, json, timeoutSeconds, 0);
        if (result is null)
        {
            (int _, string message) = LibvirtNative.LastError();
            throw new IOException($"the guest agent of libvirt domain {Domain.Name} did not run {command}: {message}");
        }

        return LibvirtNative.TakeText(result) ?? "{}";
    }

    /// <summary>The domain's live XML, as libvirt gives it now.</summary>
    public string DomainXml() => _connection.GetDomainXml(Domain.Uuid.Length > 0 ? Domain.Uuid : Domain.Name);

    /// <summary>How error messages name this connection: "libvirt:DOMAIN@URI".</summary>
    public string Describe() => $"libvirt:{Domain.Name}@{Uri}";

    /// <inheritdoc />
    public void Dispose()
    {
        s_live.TryRemove(_key, out _);
        nint domain = Interlocked.Exchange(ref _domain, 0);
        nint conn = _connection.Handle;
        unsafe
        {
            if (_monitorCallback >= 0)
            {
                _ = LibvirtNative.virConnectDomainQemuMonitorEventDeregister(conn, _monitorCallback);
            }

            if (_lifecycleCallback >= 0)
            {
                _ = LibvirtNative.virConnectDomainEventDeregisterAny(conn, _lifecycleCallback);
            }

            if (_closeCallback)
            {
                _ = LibvirtNative.virConnectUnregisterCloseCallback(conn, &OnClosed);
            }
        }

        if (domain != 0)
        {
            _ = LibvirtNative.virDomainFree(domain);
        }

        _connection.Dispose();
    }

    private unsafe void Subscribe()
    {
        s_live[_key] = this;
        nint conn = _connection.Handle;
        _monitorCallback = LibvirtNative.virConnectDomainQemuMonitorEventRegister(conn, _domain, null, &OnMonitorEvent, (void*)_key, null, 0);
        if (_monitorCallback < 0)
        {
            throw new IOException($"libvirt cannot deliver QEMU events of domain {Domain.Name}: {LibvirtNative.LastError().Message}");
        }

        _lifecycleCallback = LibvirtNative.virConnectDomainEventRegisterAny(conn, _domain, LibvirtNative.EventIdLifecycle, &OnLifecycle, (void*)_key, null);
        _closeCallback = LibvirtNative.virConnectRegisterCloseCallback(conn, &OnClosed, (void*)_key, null) == 0;
    }

    [UnmanagedCallersOnly]
    private static unsafe void OnMonitorEvent(nint conn, nint domain, byte* name, long seconds, uint micros, byte* details, void* opaque)
    {
        if (!s_live.TryGetValue((long)opaque, out LibvirtMonitor? monitor))
        {
            return;
        }

        try
        {
            // details is the event's whole JSON object ({"event":..., "data":..., "timestamp":...}) or just "data".
            JsonElement data = default;
            string? text = LibvirtNative.Text(details);
            if (!string.IsNullOrEmpty(text))
            {
                using JsonDocument doc = JsonDocument.Parse(text);
                JsonElement root = doc.RootElement;
                data = (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("data", out JsonElement d) ? d : root).Clone();
            }

            DateTimeOffset ts = DateTimeOffset.FromUnixTimeSeconds(seconds).AddTicks(micros * 10L);
            monitor._onEvent(new QmpEvent(LibvirtNative.Text(name) ?? string.Empty, data, ts));
        }
        catch (JsonException)
        {
            // An event whose details are not JSON is dropped; commands are unaffected.
        }
    }

    [UnmanagedCallersOnly]
    private static unsafe int OnLifecycle(nint conn, nint domain, int eventKind, int detail, void* opaque)
    {
        if (eventKind == LibvirtNative.EventStopped && s_live.TryGetValue((long)opaque, out LibvirtMonitor? monitor))
        {
            monitor._onGone(new IOException($"libvirt domain {monitor.Domain.Name} stopped"));
        }

        return 0;
    }

    [UnmanagedCallersOnly]
    private static unsafe void OnClosed(nint conn, int reason, void* opaque)
    {
        if (s_live.TryGetValue((long)opaque, out LibvirtMonitor? monitor))
        {
            monitor._onGone(new IOException($"the libvirt connection to {monitor.Uri} closed (reason {reason})"));
        }
    }
}
