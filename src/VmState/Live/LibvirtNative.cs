using System.Runtime.InteropServices;

namespace VmState.Live;

/// <summary>
/// The parts of the libvirt C library (Debian 12: 9.0, <c>libvirt.so.0</c> and <c>libvirt-qemu.so.0</c>) that
/// attaching to a libvirt domain uses, bound by hand (no .NET binding is packaged): connections, domain lookup and
/// state, the QEMU monitor passthrough with file descriptors (<c>virDomainQemuMonitorCommandWithFiles</c>, libvirt
/// 8.2 and later), raw QEMU monitor events and lifecycle events over libvirt's default event loop.
/// </summary>
internal static unsafe partial class LibvirtNative
{
    private const string Library = "libvirt.so.0";
    private const string QemuLibrary = "libvirt-qemu.so.0";

    /// <summary><c>virDomainState</c>.</summary>
    public static readonly string[] StateNames = ["no state", "running", "blocked", "paused", "shutting down", "shut off", "crashed", "suspended (power management)"];

    /// <summary><c>VIR_DOMAIN_EVENT_ID_LIFECYCLE</c>.</summary>
    public const int EventIdLifecycle = 0;

    /// <summary><c>VIR_DOMAIN_EVENT_STOPPED</c>: the domain's QEMU is gone.</summary>
    public const int EventStopped = 5;

    /// <summary><c>VIR_DOMAIN_XML_SECURE</c> is not asked for: passwords stay out of what we keep.</summary>
    public const uint XmlDefault = 0;

    /// <summary>VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA: the snapshot is taken, libvirt keeps no record of it.</summary>
    public const uint SnapshotCreateNoMetadata = 4;

    /// <summary><c>VIR_ERR_NO_DOMAIN</c>.</summary>
    public const int ErrNoDomain = 42;

    /// <summary>The first fields of <c>virError</c>: code, domain (error source), message.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct Error
    {
        public int Code;
        public int Domain;
        public byte* Message;
    }

    [LibraryImport(Library)]
    public static partial int virInitialize();

    [LibraryImport(Library)]
    public static partial int virEventRegisterDefaultImpl();

    [LibraryImport(Library)]
    public static partial int virEventRunDefaultImpl();

    [LibraryImport(Library)]
    public static partial void virSetErrorFunc(void* userData, delegate* unmanaged<void*, Error*, void> handler);

    [LibraryImport(Library)]
    public static partial Error* virGetLastError();

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint virConnectOpen(string? name);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint virConnectOpenReadOnly(string? name);

    [LibraryImport(Library)]
    public static partial int virConnectClose(nint conn);

    [LibraryImport(Library)]
    public static partial byte* virConnectGetURI(nint conn);

    [LibraryImport(Library)]
    public static partial byte* virConnectGetHostname(nint conn);

    [LibraryImport(Library)]
    public static partial int virConnectSetKeepAlive(nint conn, int interval, uint count);

    [LibraryImport(Library)]
    public static partial int virConnectRegisterCloseCallback(nint conn, delegate* unmanaged<nint, int, void*, void> cb, void* opaque, void* freecb);

    [LibraryImport(Library)]
    public static partial int virConnectUnregisterCloseCallback(nint conn, delegate* unmanaged<nint, int, void*, void> cb);

    [LibraryImport(Library)]
    public static partial int virConnectListAllDomains(nint conn, nint** domains, uint flags);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint virDomainLookupByName(nint conn, string name);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint virDomainLookupByUUIDString(nint conn, string uuid);

    [LibraryImport(Library)]
    public static partial int virDomainFree(nint domain);

    [LibraryImport(Library)]
    public static partial byte* virDomainGetName(nint domain);

    [LibraryImport(Library)]
    public static partial int virDomainGetUUIDString(nint domain, byte* buffer);

    [LibraryImport(Library)]
    public static partial uint virDomainGetID(nint domain);

    [LibraryImport(Library)]
    public static partial int virDomainGetState(nint domain, int* state, int* reason, uint flags);

    [LibraryImport(Library)]
    public static partial byte* virDomainGetXMLDesc(nint domain, uint flags);

    [LibraryImport(Library)]
    public static partial int virDomainIsActive(nint domain);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint virDomainSnapshotCreateXML(nint domain, string xmlDesc, uint flags);

    [LibraryImport(Library)]
    public static partial int virDomainSnapshotFree(nint snapshot);

    [LibraryImport(Library)]
    public static partial int virConnectDomainEventRegisterAny(nint conn, nint domain, int eventId, delegate* unmanaged<nint, nint, int, int, void*, int> cb, void* opaque, void* freecb);

    [LibraryImport(Library)]
    public static partial int virConnectDomainEventDeregisterAny(nint conn, int callbackId);

    [LibraryImport(QemuLibrary, StringMarshalling = StringMarshalling.Utf8)]
    public static partial byte* virDomainQemuAgentCommand(nint domain, string command, int timeoutSeconds, uint flags);

    [LibraryImport(QemuLibrary, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int virDomainQemuMonitorCommandWithFiles(nint domain, string cmd, uint ninfiles, int* infiles, uint* noutfiles, int** outfiles, byte** result, uint flags);

    [LibraryImport(QemuLibrary)]
    public static partial int virConnectDomainQemuMonitorEventRegister(nint conn, nint domain, byte* eventName, delegate* unmanaged<nint, nint, byte*, long, uint, byte*, void*, void> cb, void* opaque, void* freecb, uint flags);

    [LibraryImport(QemuLibrary)]
    public static partial int virConnectDomainQemuMonitorEventDeregister(nint conn, int callbackId);

    [LibraryImport("libc")]
    public static partial void free(void* pointer);

    [LibraryImport("libc")]
    public static partial int close(int fd);

    /// <summary>A C string libvirt owns (not freed).</summary>
    public static string? Text(byte* s) => s is null ? null : Marshal.PtrToStringUTF8((nint)s);

    /// <summary>A C string the caller owns: read, then freed.</summary>
    public static string? TakeText(byte* s)
    {
        if (s is null)
        {
            return null;
        }

        try
        {
            return Marshal.PtrToStringUTF8((nint)s);
        }
        finally
        {
            free(s);
        }
    }

    /// <summary>libvirt's last error on this thread, as (code, message).</summary>
    public static (int Code, string Message) LastError()
    {
        Error* e = virGetLastError();
        return e is null ? (0, "unknown libvirt error") : (e->Code, Text(e->Message) ?? "unknown libvirt error");
    }
}
