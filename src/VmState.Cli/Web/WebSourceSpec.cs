namespace VmState.Cli.Web;

/// <summary>What kind of thing a source of <c>vmstate serve</c> is.</summary>
internal enum WebSourceKind
{
    /// <summary>A snapshot file (anything <see cref="Vm.Open"/> opens).</summary>
    Snapshot,

    /// <summary>A running QEMU through its QMP socket.</summary>
    Qmp,

    /// <summary>A running libvirt domain.</summary>
    Libvirt,

    /// <summary>A history store (a timeline of captures).</summary>
    Store,
}

/// <summary>One source as the command line names it.</summary>
/// <param name="Kind">What it is.</param>
/// <param name="Location">The file, socket or store directory; for libvirt, the URI.</param>
/// <param name="Domain">For libvirt, the domain's name or UUID.</param>
/// <param name="Problem">Why the source cannot be opened, known before it is tried (a libvirt URI whose domains could not be listed), or null.</param>
internal sealed record WebSourceSpec(WebSourceKind Kind, string Location, string? Domain = null, string? Problem = null)
{
    /// <summary>How pages name the source: what the user typed.</summary>
    public string Describe() => Kind switch
    {
        WebSourceKind.Qmp => $"qmp:{Location}",
        WebSourceKind.Libvirt => Domain is null ? $"libvirt {Location}" : $"libvirt domain {Domain} at {Location}",
        WebSourceKind.Store => $"history store {Location}",
        _ => Location,
    };
}
