using System.Diagnostics;

namespace VmState.Integration.Harness;

/// <summary>The guest kernel and initramfs built by eng/fixture.sh (built once per test run if missing).</summary>
public sealed class GuestFixture
{
    private static readonly Lazy<GuestFixture> s_instance = new(Build, LazyThreadSafetyMode.ExecutionAndPublication);

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

    /// <summary>Builds the fixture if needed (eng/fixture.sh is idempotent and fast when up to date) and reads it.</summary>
    public static GuestFixture Ensure() => s_instance.Value;

    private static GuestFixture Build()
    {
        var psi = new ProcessStartInfo("bash", [Path.Combine(RepoPaths.Root, "eng", "fixture.sh")])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using Process p = Process.Start(psi) ?? throw new InvalidOperationException("cannot start bash eng/fixture.sh");
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
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

        foreach (string key in new[] { "KERNEL", "INITRD", "KVER" })
        {
            if (!values.ContainsKey(key))
            {
                throw new InvalidOperationException($"eng/fixture.sh printed no {key}= line:\n{stdout}");
            }
        }

        return new GuestFixture(values);
    }
}
