namespace VmState.Live;

/// <summary>
/// A qemu-system command line as QEMU reads it: the program, then options in order, each <c>-name</c> with its value
/// or, for the options QEMU 7.2 declares without an argument (<c>qemu-options.hx</c>, HAS_ARG 0), alone. A word
/// that does not start with '-' is QEMU's shorthand for <c>-hda WORD</c> and is kept as such.
/// </summary>
public sealed class QemuArguments
{
    // QEMU 7.2 qemu-options.hx: the options declared without an argument (x86 system emulation).
    private static readonly HashSet<string> s_flags = new(StringComparer.Ordinal)
    {
        "h", "help", "version", "S", "s", "snapshot", "no-reboot", "no-shutdown", "nographic", "daemonize",
        "enable-kvm", "no-hpet", "no-acpi", "nodefaults", "no-user-config", "full-screen", "no-fd-bootchk",
        "no-quit", "win2k-hack", "only-migratable", "preconfig", "enable-sync-profile", "xen-attach", "alt-grab",
        "ctrl-grab", "sdl", "curses", "portrait", "old-param", "semihosting", "no-frame", "usb", "enable-fips",
        "rtc-td-hack", "no-kvm-pit-reinjection", "singlestep", "perfmap",
    };

    private QemuArguments(string program, List<QemuArgument> options)
    {
        Program = program;
        Options = options;
    }

    /// <summary>The QEMU program (argv[0]), e.g. <c>qemu-system-x86_64</c> or a path to it.</summary>
    public string Program { get; }

    /// <summary>The options in command-line order.</summary>
    public IReadOnlyList<QemuArgument> Options { get; }

    /// <summary>True for an option QEMU 7.2 declares without an argument.</summary>
    public static bool IsFlag(string name) => s_flags.Contains(name);

    /// <summary>
    /// Reads <paramref name="argv"/> (program first). <c>--name</c> is the same as <c>-name</c>, as QEMU allows.
    /// </summary>
    /// <exception cref="ArgumentException">The list is empty, or an option that needs a value is the last word.</exception>
    public static QemuArguments Parse(IReadOnlyList<string> argv)
    {
        ArgumentNullException.ThrowIfNull(argv);
        if (argv.Count == 0 || argv[0].Length == 0)
        {
            throw new ArgumentException("the QEMU command line is empty: give the program and its arguments, e.g. -- qemu-system-x86_64 -m 512 ...");
        }

        var options = new List<QemuArgument>();
        for (int i = 1; i < argv.Count; i++)
        {
            string word = argv[i];
            if (word.Length < 2 || word[0] != '-')
            {
                options.Add(new QemuArgument("hda", word));
                continue;
            }

            string name = word.StartsWith("--", StringComparison.Ordinal) ? word[2..] : word[1..];
            if (IsFlag(name))
            {
                options.Add(new QemuArgument(name, null));
                continue;
            }

            if (i + 1 >= argv.Count)
            {
                throw new ArgumentException($"the QEMU option {word} needs a value");
            }

            options.Add(new QemuArgument(name, argv[++i]));
        }

        return new QemuArguments(argv[0], options);
    }

    /// <summary>A command line with the same program and <paramref name="options"/>.</summary>
    public QemuArguments With(IEnumerable<QemuArgument> options) => new(Program, [.. options]);

    /// <summary>The options named <paramref name="name"/>, in order.</summary>
    public IEnumerable<QemuArgument> All(string name) => Options.Where(o => o.Name == name);

    /// <summary>The last option named <paramref name="name"/> (QEMU lets the last one win), or null.</summary>
    public QemuArgument? Last(string name) => Options.LastOrDefault(o => o.Name == name);

    /// <summary>True when any option is named <paramref name="name"/>.</summary>
    public bool Has(string name) => Options.Any(o => o.Name == name);

    /// <summary>The words to start QEMU with: the program, then every option.</summary>
    public IReadOnlyList<string> ToArgv() => [Program, .. Options.SelectMany(o => o.ToArgv())];
}
