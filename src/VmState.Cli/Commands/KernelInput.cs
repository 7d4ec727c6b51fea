using System.CommandLine;
using VmState.Linux;

namespace VmState.Cli.Commands;

/// <summary>
/// The input options of the Linux commands (a snapshot file or a running VM, and which kernel-location sources to
/// use), opening the input and locating the kernel, and the error handling they add to <see cref="CommonOptions.Run"/>.
/// </summary>
internal sealed class KernelInput
{
    private readonly Argument<string?>? _input;
    private readonly Argument<string[]>? _positional;
    private readonly Option<string?> _qmp = CommonOptions.Qmp();
    private readonly Option<bool> _pause = new("--pause") { Description = "with --qmp: pause the guest while reading (resumed afterwards); lists may otherwise change under the walk" };
    private readonly Option<string?> _snapshot = CommonOptions.SnapshotName();
    private readonly Option<bool> _raw = CommonOptions.Raw();
    private readonly Option<string?> _mainRam = CommonOptions.MainRam();
    private readonly Option<bool> _noVmcoreinfo = new("--no-vmcoreinfo") { Description = "do not use VMCOREINFO (find the kernel from the vCPUs' CR3 or the banner)" };
    private readonly Option<string?> _systemMap = SystemMapOption();
    private readonly Option<string?> _btf = BtfOption();
    private readonly Option<bool> _noCpu = new("--no-cpu") { Description = "do not use vCPU state (find the kernel from VMCOREINFO or the banner)" };

    /// <summary>
    /// Adds the input argument and options to <paramref name="command"/>; with <paramref name="trailing"/>, the
    /// command takes <c>[SNAPSHOT] TRAILING</c> (the snapshot left out with --qmp), read with <see cref="Trailing"/>.
    /// </summary>
    public KernelInput(Command command, string? trailing = null, string? trailingDescription = null)
    {
        if (trailing is null)
        {
            _input = CommonOptions.OptionalSnapshotArgument();
            command.Arguments.Add(_input);
        }
        else
        {
            _positional = new Argument<string[]>($"SNAPSHOT {trailing}")
            {
                Description = $"the snapshot file (omit with --qmp) and {trailingDescription ?? trailing}",
                Arity = new ArgumentArity(1, 2),
            };
            command.Arguments.Add(_positional);
        }

        command.Options.Add(_qmp);
        command.Options.Add(_pause);
        command.Options.Add(_snapshot);
        command.Options.Add(_raw);
        command.Options.Add(_mainRam);
        command.Options.Add(_noVmcoreinfo);
        command.Options.Add(_noCpu);
        command.Options.Add(_systemMap);
        command.Options.Add(_btf);
    }

    /// <summary>The --system-map option (also on commands that take no other kernel options, such as read --sym).</summary>
    public static Option<string?> SystemMapOption() => new("--system-map") { Description = "take the kernel symbols from this System.map (moved by the KASLR offset found in memory) instead of the in-memory kallsyms" };

    /// <summary>The --btf option (also on commands that take no other kernel options, such as translate --pid).</summary>
    public static Option<string?> BtfOption() => new("--btf") { Description = "take the kernel types from this vmlinux (.BTF section) or raw BTF file instead of the in-memory BTF" };

    /// <summary>
    /// Opens the input through the library's <see cref="Vm"/> (the caller disposes it), with the kernel-location
    /// options, so <see cref="Vm.Linux"/> locates the kernel as the options say.
    /// </summary>
    public Vm Open(ParseResult r) =>
        CommonOptions.OpenVm(Input(r), r.GetValue(_qmp), CommonOptions.VmOptions(r.GetValue(_snapshot), r.GetValue(_raw), cacheReads: true, KernelOptions(r), r.GetValue(_mainRam)), r.GetValue(_pause));

    /// <summary>True when the input is a running VM (--qmp).</summary>
    public bool IsLive(ParseResult r) => r.GetValue(_qmp) is not null;

    /// <summary>True when --pause was given.</summary>
    public bool Pauses(ParseResult r) => r.GetValue(_pause);

    /// <summary>The trailing positional value (e.g. the PID), for a command made with one.</summary>
    public string Trailing(ParseResult r) => r.GetValue(_positional!)![^1];

    /// <summary>The trailing positional value as a process id.</summary>
    /// <exception cref="ArgumentException">Not a non-negative decimal number.</exception>
    public int TrailingPid(ParseResult r) =>
        int.TryParse(Trailing(r), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int pid)
            ? pid
            : throw new ArgumentException($"PID '{Trailing(r)}' is not a process id (a decimal number)");

    private string? Input(ParseResult r)
    {
        if (_input is not null)
        {
            return r.GetValue(_input);
        }

        string[] values = r.GetValue(_positional!)!;
        return values.Length == 2 ? values[0] : null;
    }

    /// <summary>The kernel-location sources and overrides the options give.</summary>
    private KernelLocatorOptions KernelOptions(ParseResult r) => new()
    {
        UseVmcoreinfo = !r.GetValue(_noVmcoreinfo),
        UseCpuState = !r.GetValue(_noCpu),
        SystemMapPath = r.GetValue(_systemMap),
        BtfPath = r.GetValue(_btf),
    };

    /// <summary><see cref="CommonOptions.Run"/>, plus guest kernel data problems reported as invalid input.</summary>
    public static int Run(Func<int> body) => CommonOptions.Run(() =>
    {
        try
        {
            return body();
        }
        catch (Exception e) when (e is KernelDataException or VmStateNotFoundException { Kind: VmStateObjectKind.Process })
        {
            // A pid the guest does not have was a guest-kernel error before the not-found type existed; the prefix
            // stays so the CLI's output does not change.
            Console.Error.WriteLine($"vmstate: guest kernel: {e.Message}");
            return 2;
        }
    });
}
