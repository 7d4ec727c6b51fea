using System.CommandLine;
using VmState.Live;

namespace VmState.Cli.Commands;

/// <summary>
/// A running VM as the command line names it: a QMP socket (<c>--qmp</c>), or a libvirt domain
/// (<c>--libvirt URI --domain NAME|UUID</c>).
/// </summary>
/// <param name="Socket">The QMP socket, or null for a libvirt domain.</param>
/// <param name="LibvirtUri">The libvirt URI, or null for a QMP socket.</param>
/// <param name="Domain">The libvirt domain's name or UUID, or null for a QMP socket.</param>
internal sealed record LiveTarget(string? Socket, string? LibvirtUri, string? Domain)
{
    /// <summary>How messages name the VM.</summary>
    public string Describe() => Socket ?? $"libvirt domain {Domain} at {LibvirtUri}";

    /// <summary>The arguments that name the same VM to a child vmstate process.</summary>
    public IReadOnlyList<string> Arguments() => Socket is not null ? ["--qmp", Socket] : ["--libvirt", LibvirtUri!, "--domain", Domain!];

    /// <summary>Opens its QMP connection (a socket, or libvirt's monitor passthrough).</summary>
    public Task<QmpClient> ConnectAsync(TimeSpan timeout, CancellationToken cancellationToken) =>
        Socket is not null
            ? QmpClient.ConnectAsync(Socket, timeout, cancellationToken)
            : QmpClient.ConnectLibvirtAsync(LibvirtUri!, Domain!, timeout, cancellationToken);

    /// <summary>Attaches the library's front door to it.</summary>
    public Task<Vm> AttachAsync(VmAttachOptions options, CancellationToken cancellationToken = default) =>
        Socket is not null
            ? Vm.AttachAsync(Socket, options, cancellationToken)
            : Vm.AttachLibvirtAsync(LibvirtUri!, Domain!, options, cancellationToken);
}

/// <summary>The options that name a running VM: <c>--qmp SOCKET</c>, or <c>--libvirt URI --domain NAME</c>.</summary>
internal sealed class LiveOptions
{
    private readonly Option<string?> _qmp;
    private readonly Option<string?> _libvirt = new("--libvirt")
    {
        Description = "work on a running libvirt domain: the libvirt URI (e.g. qemu:///system), with --domain",
    };

    private readonly Option<string?> _domain = new("--domain")
    {
        Description = "with --libvirt: the domain's name or UUID",
    };

    /// <summary>
    /// Adds the options to <paramref name="command"/>; <paramref name="qmp"/> replaces the default --qmp option;
    /// <paramref name="recursive"/> makes them options of its subcommands too.
    /// </summary>
    public LiveOptions(Command command, Option<string?>? qmp = null, bool recursive = false)
    {
        _qmp = qmp ?? CommonOptions.Qmp();
        _qmp.Recursive = recursive;
        _libvirt.Recursive = recursive;
        _domain.Recursive = recursive;
        command.Options.Add(_qmp);
        command.Options.Add(_libvirt);
        command.Options.Add(_domain);
    }

    /// <summary>True when the command line names a running VM.</summary>
    public bool IsGiven(ParseResult r) => r.GetValue(_qmp) is not null || r.GetValue(_libvirt) is not null || r.GetValue(_domain) is not null;

    /// <summary>The running VM the command line names, or null when it names none.</summary>
    /// <exception cref="ArgumentException">--libvirt without --domain (or the reverse), or both --qmp and --libvirt.</exception>
    public LiveTarget? Get(ParseResult r)
    {
        string? qmp = r.GetValue(_qmp);
        string? uri = r.GetValue(_libvirt);
        string? domain = r.GetValue(_domain);
        if (qmp is not null && (uri is not null || domain is not null))
        {
            throw new ArgumentException("give --qmp SOCKET or --libvirt URI --domain NAME, not both");
        }

        if ((uri is null) != (domain is null))
        {
            throw new ArgumentException(uri is null ? "--domain needs --libvirt URI (e.g. --libvirt qemu:///system)" : "--libvirt needs --domain NAME (vmstate list --libvirt URI shows the domains)");
        }

        return qmp is not null ? new LiveTarget(qmp, null, null) : uri is not null ? new LiveTarget(null, uri, domain) : null;
    }

    /// <summary>The running VM the command line names; a clear error when it names none.</summary>
    /// <exception cref="ArgumentException">No running VM named, or the options conflict.</exception>
    public LiveTarget Require(ParseResult r, string command) =>
        Get(r) ?? throw new ArgumentException($"vmstate {command}: give --qmp SOCKET (a running QEMU) or --libvirt URI --domain NAME");
}
