using System.Collections.Concurrent;
using System.Diagnostics;

namespace VmState.Integration.Harness;

/// <summary>
/// The guest kernel and initramfs built by eng/fixture.sh (built once per test run if missing), one per kernel series
/// of the matrix (<see cref="KernelSeries"/>).
/// </summary>
public sealed class GuestFixture
{
    /// <summary>The kernel series eng/fixture.sh builds guests for (its --kernel values).</summary>
    public static readonly IReadOnlyList<string> KernelSeries = ["6.1", "6.12"];

    private static readonly Lazy<GuestFixture> s_instance = new(() => Build(null), LazyThreadSafetyMode.ExecutionAndPublication);
    private static readonly Lazy<GuestFixture> s_arm64 = new(() => Build(null, arm64: true), LazyThreadSafetyMode.ExecutionAndPublication);
    private static readonly ConcurrentDictionary<string, Lazy<GuestFixture>> s_bySeries = new(StringComparer.Ordinal);

    private GuestFixture(IReadOnlyDictionary<string, string> values)
    {
        Values = values;
    }

    /// <summary>Every KEY=value line of the fixture's env file.</summary>
    public IReadOnlyDictionary<string, string> Values { get; }

    /// <summary>The guest kernel (bzImage).</summary>
    public string Kernel => Values["KERNEL"];

    /// <summary>The initramfs.</summary>
    public string Initrd => Values["INITRD"];

    /// <summary>The kernel release, e.g. 6.1.0-56-amd64.</summary>
    public string KernelVersion => Values["KVER"];

    /// <summary>The kernel series of this guest, e.g. 6.12 (eng/fixture.sh --kernel).</summary>
    public string Series => Values["KERNEL_SERIES"];

    /// <summary>The kernel's real System.map (from its -dbg package), at link-time addresses.</summary>
    public string SystemMap => Values["SYSTEM_MAP"];

    /// <summary>
    /// Builds the default fixture if needed (eng/fixture.sh is idempotent and fast when up to date) and reads it. The
    /// default series is 6.1, or what the FIXTURE_KERNEL environment variable names (eng/fixture.sh reads it).
    /// </summary>
    public static GuestFixture Ensure() => s_instance.Value;

    /// <summary>The arm64 (aarch64) guest: eng/fixture.sh --arch arm64 (Debian's arm64 6.1 kernel), built if needed.</summary>
    public static GuestFixture EnsureArm64() => s_arm64.Value;

    /// <summary>
    /// The fixture of kernel <paramref name="series"/> (one of <see cref="KernelSeries"/>), built if needed; null means
    /// the default (<see cref="Ensure()"/>).
    /// </summary>
    public static GuestFixture Ensure(string? series) =>
        series is null ? Ensure() : s_bySeries.GetOrAdd(series, s => new Lazy<GuestFixture>(() => Build(s), LazyThreadSafetyMode.ExecutionAndPublication)).Value;

    private static GuestFixture Build(string? series, bool arm64 = false)
    {
        string[] args = arm64 ? [Path.Combine(RepoPaths.Root, "eng", "fixture.sh"), "--arch", "arm64"]
            : series is null ? [Path.Combine(RepoPaths.Root, "eng", "fixture.sh")] : [Path.Combine(RepoPaths.Root, "eng", "fixture.sh"), "--kernel", series];
        var psi = new ProcessStartInfo("bash", args)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using Process p = Process.Start(psi) ?? throw new InvalidOperationException("cannot start bash eng/fixture.sh");
        // A build from nothing downloads kernel packages: minutes. A build that takes longer than 20 (a mirror that never
        // answers) fails the tests that need it, rather than holding the whole run.
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        Task<string> output = p.StandardOutput.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(20)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"bash {string.Join(' ', args)} did not finish in 20 minutes");
        }

        string stdout = output.Result;
        if (p.ExitCode != 0)
        {
            throw new InvalidOperationException($"eng/fixture.sh failed ({p.ExitCode}):\n{stderr.Result}");
        }

        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string line in stdout.Split('\n'))
        {
            int eq = line.IndexOf('=', StringComparison.Ordinal);
            if (eq > 0 && line[..eq].All(c => char.IsUpper(c) || c == '_'))
            {
                values[line[..eq]] = line[(eq + 1)..].Trim();
            }
        }

        // The arm64 guest has no System.map (its -dbg package is not fetched); its tests use the guest's kallsyms.
        foreach (string key in arm64 ? new[] { "KERNEL", "INITRD", "KVER", "KERNEL_SERIES" } : new[] { "KERNEL", "INITRD", "KVER", "KERNEL_SERIES", "SYSTEM_MAP" })
        {
            if (!values.ContainsKey(key))
            {
                throw new InvalidOperationException($"eng/fixture.sh printed no {key}= line:\n{stdout}");
            }
        }

        return new GuestFixture(values);
    }
}
