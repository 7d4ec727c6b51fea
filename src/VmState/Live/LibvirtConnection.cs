using System.Xml.Linq;
using System.Globalization;
using System.Runtime.InteropServices;
using VmState.Views;

namespace VmState.Live;

/// <summary>One libvirt domain as <see cref="LibvirtConnection.ListDomains"/> sees it.</summary>
/// <param name="Name">The domain's name.</param>
/// <param name="Uuid">The domain's UUID (lower case, with dashes).</param>
/// <param name="Id">libvirt's id of a running domain; null when it is not running.</param>
/// <param name="State">The state in words ("running", "paused", "shut off", ...).</param>
/// <param name="ProcessId">The QEMU process on this host, when the connection is local and the domain runs.</param>
public sealed record LibvirtDomainInfo(string Name, string Uuid, int? Id, string State, int? ProcessId)
{
    /// <summary>How a list of domains is shown (the CLI's <c>list</c>, JSON, other front ends).</summary>
    public static ListView<LibvirtDomainInfo> View { get; } = new(
        [
            new("name", FieldKind.Text, d => d.Name),
            new("state", FieldKind.Text, d => d.State),
            new("id", FieldKind.Integer, d => d.Id is int i ? (long)i : null),
            new("pid", FieldKind.Integer, d => d.ProcessId is int p ? (long)p : null),
            new("uuid", FieldKind.Text, d => d.Uuid),
        ],
        [
            new("NAME", -20, d => d.Name),
            new("STATE", -14, d => d.State),
            new("ID", 4, d => d.Id?.ToString(CultureInfo.InvariantCulture) ?? "-"),
            new("PID", 8, d => d.ProcessId?.ToString(CultureInfo.InvariantCulture) ?? "-"),
            new("UUID", 0, d => d.Uuid),
        ]);
}

/// <summary>
/// A connection to libvirt (<c>virConnectOpen</c>) through the C library <c>libvirt.so.0</c>: lists domains and
/// opens the QMP passthrough of one (<see cref="QmpClient.ConnectLibvirtAsync"/>). URIs are libvirt's own, e.g.
/// <c>qemu:///system</c>, <c>qemu:///session</c>, <c>qemu+unix:///system?socket=/path/libvirt-sock</c>,
/// <c>qemu+ssh://host/system</c>. libvirt's default event loop runs on one background thread per process, started
/// on first use, so keepalives and events flow. Thread-safe, as libvirt connections are.
/// </summary>
public sealed class LibvirtConnection : IDisposable
{
    private static readonly Lock s_initGate = new();
    private static bool s_initialised;
    private nint _handle;

    private LibvirtConnection(nint handle, string uri)
    {
        _handle = handle;
        Uri = uri;
        IsLocal = IsLocalUri(uri);
    }

    /// <summary>The URI the connection was opened with.</summary>
    public string Uri { get; }

    /// <summary>
    /// True when the hypervisor runs on this host (the URI names no remote host): then the domain's QEMU process is
    /// found here and its memory read directly.
    /// </summary>
    public bool IsLocal { get; }

    internal nint Handle
    {
        get
        {
            nint h = Volatile.Read(ref _handle);
            ObjectDisposedException.ThrowIf(h == 0, this);
            return h;
        }
    }

    /// <summary>Opens a connection (read-write unless <paramref name="readOnly"/>: the QEMU monitor needs read-write).</summary>
    /// <exception cref="IOException">libvirt is not installed, or the connection failed (with libvirt's reason).</exception>
    public static LibvirtConnection Open(string uri, bool readOnly = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(uri);
        EnsureInitialised();
        nint handle = readOnly ? LibvirtNative.virConnectOpenReadOnly(uri) : LibvirtNative.virConnectOpen(uri);
        if (handle == 0)
        {
            throw new IOException($"cannot connect to libvirt at {uri}: {LibvirtNative.LastError().Message}");
        }

        // Keepalives (every 5 s, 3 missed) make a dead daemon or network visible as a closed connection.
        _ = LibvirtNative.virConnectSetKeepAlive(handle, 5, 3);
        return new LibvirtConnection(handle, uri);
    }

    /// <summary>Every domain this connection sees, running or not, sorted by name.</summary>
    public IReadOnlyList<LibvirtDomainInfo> ListDomains()
    {
        unsafe
        {
            nint* domains = null;
            int n = LibvirtNative.virConnectListAllDomains(Handle, &domains, 0);
            if (n < 0)
            {
                throw new IOException($"libvirt at {Uri} cannot list domains: {LibvirtNative.LastError().Message}");
            }

            var list = new List<LibvirtDomainInfo>(n);
            try
            {
                for (int i = 0; i < n; i++)
                {
                    list.Add(Describe(domains[i]));
                }
            }
            finally
            {
                for (int i = 0; i < n; i++)
                {
                    _ = LibvirtNative.virDomainFree(domains[i]);
                }

                LibvirtNative.free(domains);
            }

            list.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
            return list;
        }
    }

    /// <summary>One domain by name or UUID.</summary>
    /// <exception cref="VmStateNotFoundException">No domain has that name or UUID.</exception>
    public LibvirtDomainInfo GetDomain(string nameOrUuid)
    {
        nint d = LookUp(nameOrUuid);
        try
        {
            return Describe(d);
        }
        finally
        {
            _ = LibvirtNative.virDomainFree(d);
        }
    }

    /// <summary>The domain's XML description as libvirt gives it now (live XML for a running domain).</summary>
    public string GetDomainXml(string nameOrUuid)
    {
        nint d = LookUp(nameOrUuid);
        try
        {
            unsafe
            {
                return LibvirtNative.TakeText(LibvirtNative.virDomainGetXMLDesc(d, LibvirtNative.XmlDefault))
                    ?? throw new IOException($"libvirt gave no XML for domain {nameOrUuid}: {LibvirtNative.LastError().Message}");
            }
        }
        finally
        {
            _ = LibvirtNative.virDomainFree(d);
        }
    }

    /// <summary>
    /// Saves the running or paused domain's memory and device state to <paramref name="hostPath"/> on the domain's own
    /// host (the libvirt daemon's machine, which may not be this one): an external memory snapshot without metadata
    /// (<c>virDomainSnapshotCreateXML</c> with <c>&lt;memory snapshot='external'/&gt;</c>, every disk
    /// <c>snapshot='no'</c>), written by the host's libvirt in its save-image format (what <c>virsh save</c> writes).
    /// The domain is left as it was: running, or paused. This is how a VM on a remote host is saved, where a
    /// descriptor of ours cannot be handed to its QEMU.
    /// </summary>
    /// <exception cref="IOException">libvirt refused or failed (its message).</exception>
    public void SaveMemoryOnHost(string nameOrUuid, string hostPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(hostPath);
        if (!hostPath.StartsWith('/') || hostPath.Any(char.IsControl))
        {
            throw new ArgumentException($"'{hostPath}' is not an absolute path on the domain's host");
        }

        var disks = new System.Text.StringBuilder();
        foreach (XElement target in XDocument.Parse(GetDomainXml(nameOrUuid)).Descendants("disk").Elements("target"))
        {
            if (target.Attribute("dev")?.Value is string dev)
            {
                disks.Append(System.Globalization.CultureInfo.InvariantCulture, $"<disk name='{System.Security.SecurityElement.Escape(dev)}' snapshot='no'/>");
            }
        }

        string name = $"vmstate-{DateTime.UtcNow:yyyyMMddTHHmmssfff}-{Environment.ProcessId}";
        string xml = $"<domainsnapshot><name>{name}</name><memory snapshot='external' file='{System.Security.SecurityElement.Escape(hostPath)}'/><disks>{disks}</disks></domainsnapshot>";
        nint d = LookUp(nameOrUuid);
        try
        {
            nint snapshot = LibvirtNative.virDomainSnapshotCreateXML(d, xml, LibvirtNative.SnapshotCreateNoMetadata);
            if (snapshot == 0)
            {
                throw new IOException($"libvirt at {Uri} could not save domain {nameOrUuid} to {hostPath} on its host: {LibvirtNative.LastError().Message}");
            }

            _ = LibvirtNative.virDomainSnapshotFree(snapshot);
        }
        finally
        {
            _ = LibvirtNative.virDomainFree(d);
        }
    }

    /// <summary>
    /// True when a descriptor of this process can be handed to the domain's QEMU through this URI: libvirt passes
    /// files only over a UNIX socket (<c>qemu:///…</c>, <c>qemu+unix://…</c>); <c>+tcp</c>, <c>+tls</c>, <c>+ssh</c> and
    /// the other remote transports cannot, and their VMs save on their own host (<see cref="SaveMemoryOnHost"/>).
    /// </summary>
    public static bool CanPassDescriptors(string uri)
    {
        ArgumentNullException.ThrowIfNull(uri);
        int scheme = uri.IndexOf("://", StringComparison.Ordinal);
        if (scheme < 0)
        {
            return true;
        }

        int plus = uri.IndexOf('+', 0, scheme);
        return plus < 0 || uri[(plus + 1)..scheme] == "unix";
    }

    /// <summary>A domain handle by name, else by UUID; the caller frees it.</summary>
    internal nint LookUp(string nameOrUuid)
    {
        ArgumentException.ThrowIfNullOrEmpty(nameOrUuid);
        nint d = LibvirtNative.virDomainLookupByName(Handle, nameOrUuid);
        if (d == 0 && Guid.TryParse(nameOrUuid, out _))
        {
            d = LibvirtNative.virDomainLookupByUUIDString(Handle, nameOrUuid);
        }

        if (d == 0)
        {
            (int code, string message) = LibvirtNative.LastError();
            if (code == LibvirtNative.ErrNoDomain)
            {
                string known = string.Join(", ", ListDomains().Select(x => x.Name));
                throw new VmStateNotFoundException(VmStateObjectKind.Domain, nameOrUuid, $"libvirt at {Uri} has no domain named {nameOrUuid} (its domains: {(known.Length == 0 ? "none" : known)})");
            }

            throw new IOException($"libvirt at {Uri} cannot look up domain {nameOrUuid}: {message}");
        }

        return d;
    }

    internal LibvirtDomainInfo Describe(nint d)
    {
        unsafe
        {
            string name = LibvirtNative.Text(LibvirtNative.virDomainGetName(d)) ?? "?";
            byte* uuid = stackalloc byte[40];
            string id = LibvirtNative.virDomainGetUUIDString(d, uuid) == 0 ? LibvirtNative.Text(uuid) ?? string.Empty : string.Empty;
            int state = 0;
            int reason = 0;
            string stateName = LibvirtNative.virDomainGetState(d, &state, &reason, 0) == 0 && state >= 0 && state < LibvirtNative.StateNames.Length
                ? LibvirtNative.StateNames[state]
                : "unknown";
            uint domainId = LibvirtNative.virDomainGetID(d);
            bool running = domainId != uint.MaxValue;
            int? pid = running && IsLocal && id.Length > 0 ? FindQemuProcess(id) : null;
            return new LibvirtDomainInfo(name, id, running ? (int)domainId : null, stateName, pid);
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        nint h = Interlocked.Exchange(ref _handle, 0);
        if (h != 0)
        {
            _ = LibvirtNative.virConnectClose(h);
        }
    }

    /// <summary>
    /// The QEMU process on this host that runs the domain with <paramref name="uuid"/>: libvirt starts QEMU with
    /// <c>-uuid UUID</c>, and no libvirt call tells the process. Null when none is seen (another host, or no rights
    /// to read other processes' command lines).
    /// </summary>
    internal static int? FindQemuProcess(string uuid)
    {
        foreach (string dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out int pid))
            {
                continue;
            }

            string[] argv;
            try
            {
                argv = File.ReadAllText(Path.Combine(dir, "cmdline")).Split('\0');
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue;
            }

            if (argv.Length < 3 || !Path.GetFileName(argv[0]).StartsWith("qemu", StringComparison.Ordinal))
            {
                continue;
            }

            for (int i = 1; i + 1 < argv.Length; i++)
            {
                if (argv[i] == "-uuid" && string.Equals(argv[i + 1], uuid, StringComparison.OrdinalIgnoreCase))
                {
                    return pid;
                }
            }
        }

        return null;
    }

    /// <summary>The host a libvirt URI names, or "localhost" for this one.</summary>
    public static string HostOf(string uri)
    {
        ArgumentNullException.ThrowIfNull(uri);
        if (IsLocalUri(uri))
        {
            return "localhost";
        }

        string rest = uri[(uri.IndexOf("://", StringComparison.Ordinal) + 3)..];
        int end = rest.IndexOfAny(['/', '?']);
        string authority = end < 0 ? rest : rest[..end];
        return authority[(authority.LastIndexOf('@') + 1)..];
    }

    /// <summary>True when the URI names no remote host (<c>qemu:///system</c>, <c>qemu+unix:///...</c>, localhost).</summary>
    public static bool IsLocalUri(string uri)
    {
        ArgumentNullException.ThrowIfNull(uri);
        int scheme = uri.IndexOf("://", StringComparison.Ordinal);
        if (scheme < 0)
        {
            return true;
        }

        string rest = uri[(scheme + 3)..];
        int end = rest.IndexOfAny(['/', '?']);
        string authority = end < 0 ? rest : rest[..end];
        int at = authority.LastIndexOf('@');
        string host = at < 0 ? authority : authority[(at + 1)..];
        int colon = host.LastIndexOf(':');
        if (colon >= 0 && !host.EndsWith(']'))
        {
            host = host[..colon];
        }

        return host.Length == 0 || host is "localhost" or "127.0.0.1" or "[::1]";
    }

    private static void EnsureInitialised()
    {
        lock (s_initGate)
        {
            if (s_initialised)
            {
                return;
            }

            try
            {
                if (LibvirtNative.virInitialize() < 0)
                {
                    throw new IOException("libvirt failed to initialise (virInitialize)");
                }
            }
            catch (DllNotFoundException e)
            {
                throw new IOException("the libvirt library (libvirt.so.0, Debian package libvirt0) is not installed; it is needed for --libvirt", e);
            }

            unsafe
            {
                // libvirt prints every error on stderr unless a handler is set; ours are reported as exceptions.
                LibvirtNative.virSetErrorFunc(null, &IgnoreError);
            }

            if (LibvirtNative.virEventRegisterDefaultImpl() < 0)
            {
                throw new IOException($"libvirt's event loop cannot be set up: {LibvirtNative.LastError().Message}");
            }

            var loop = new Thread(RunEventLoop) { IsBackground = true, Name = "libvirt event loop" };
            loop.Start();
            s_initialised = true;
        }
    }

    private static void RunEventLoop()
    {
        while (LibvirtNative.virEventRunDefaultImpl() >= 0)
        {
        }
    }

    [UnmanagedCallersOnly]
    private static unsafe void IgnoreError(void* userData, LibvirtNative.Error* error)
    {
    }
}
