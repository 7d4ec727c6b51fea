using System.CommandLine;
using VmState.Linux;

namespace VmState.Cli.Commands;

/// <summary>
/// The input options of the commands that may read the guest kernel (a snapshot file or a running VM, and the
/// <see cref="KernelOptions"/>), opening the input, and the error handling they add to <see cref="CommonOptions.Run"/>.
/// </summary>
internal sealed class KernelInput
{
    private readonly Argument<string?>? _input;
    private readonly Argument<string[]>? _positional;
    private readonly int _trailing;
    private readonly LiveOptions _live;
    private readonly Option<bool> _pause = new("--pause") { Description = "with --qmp: pause the guest while reading (resumed afterwards); lists may otherwise change under the walk" };
    private readonly Option<string?> _snapshot = CommonOptions.SnapshotName();
    private readonly Option<bool> _raw = CommonOptions.Raw();
    private readonly Option<string?> _mainRam = CommonOptions.MainRam();
    private readonly KernelOptions _kernel;
    private readonly IndexCacheOptions _indexCache;

    /// <summary>
    /// Adds the input argument and options to <paramref name="command"/>. With <paramref name="trailing"/> (e.g.
    /// <c>PID</c> or <c>ADDR LEN</c>: <paramref name="trailingCount"/> words), the command takes
    /// <c>[SNAPSHOT] TRAILING</c>, the snapshot left out with --qmp, read with <see cref="Trailing"/>.
    /// </summary>
    public KernelInput(Command command, string? trailing = null, string? trailingDescription = null, int trailingCount = 1)
    {
        if (trailing is null)
        {
            _input = CommonOptions.OptionalSnapshotArgument();
            command.Arguments.Add(_input);
        }
        else
        {
            _trailing = trailingCount;
            _positional = new Argument<string[]>($"SNAPSHOT {trailing}")
            {
                Description = $"the snapshot file (omit with --qmp) and {trailingDescription ?? trailing}",
                Arity = new ArgumentArity(trailingCount, trailingCount + 1),
            };
            command.Arguments.Add(_positional);
        }

        _live = new LiveOptions(command);
        command.Options.Add(_pause);
        command.Options.Add(_snapshot);
        command.Options.Add(_raw);
        command.Options.Add(_mainRam);
        _kernel = new KernelOptions(command);
        _indexCache = new IndexCacheOptions(command);
    }

    /// <summary>
    /// Opens the input through the library's <see cref="Vm"/> (the caller disposes it), with the kernel-location
    /// options, so <see cref="Vm.Linux"/> locates the kernel as the options say; <paramref name="cacheReport"/>
    /// receives the index cache's diagnostics.
    /// </summary>
    public Vm Open(ParseResult r, Action<string>? cacheReport = null) =>
        CommonOptions.OpenVm(Input(r), _live.Get(r), CommonOptions.VmOptions(r.GetValue(_snapshot), r.GetValue(_raw), cacheReads: true, _kernel.Get(r), r.GetValue(_mainRam), _indexCache.Get(r, cacheReport)), r.GetValue(_pause));

    /// <summary>True when the input is a running VM (--qmp, or --libvirt with --domain).</summary>
    public bool IsLive(ParseResult r) => _live.IsGiven(r);

    /// <summary>True when --pause was given.</summary>
    public bool Pauses(ParseResult r) => r.GetValue(_pause);

    /// <summary>The trailing positional value <paramref name="index"/> (e.g. the PID, or ADDR and LEN), for a command made with them.</summary>
    public string Trailing(ParseResult r, int index = 0)
    {
        string[] values = r.GetValue(_positional!)!;
        return values[values.Length - _trailing + index];
    }

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
        return values.Length == _trailing + 1 ? values[0] : null;
    }

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
