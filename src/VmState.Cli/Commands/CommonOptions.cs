using System.CommandLine;
using System.Text.Json;
using VmState.Formats.Migration;
using VmState.Formats;
using VmState.IO;
using VmState.Linux;
using VmState.Snapshots;

namespace VmState.Cli.Commands;

/// <summary>Options shared by the commands that open a snapshot, and the error handling every command uses.</summary>
internal static class CommonOptions
{
    public static Argument<string> SnapshotArgument() => new("SNAPSHOT")
    {
        Description = "migration stream file, virsh save file, qcow2 image with internal snapshots, or ELF core",
    };

    /// <summary>The SNAPSHOT argument of commands that also work on a running VM (then it is left out).</summary>
    public static Argument<string?> OptionalSnapshotArgument() => new("SNAPSHOT")
    {
        Description = "migration stream file, virsh save file, qcow2 image with internal snapshots, or ELF core (omit with --qmp)",
        Arity = ArgumentArity.ZeroOrOne,
    };

    public static Option<string?> Qmp() => new("--qmp")
    {
        Description = "work on a running QEMU through this QMP socket (guest RAM read from QEMU's process memory)",
    };

    /// <summary>
    /// Opens a file, or attaches to a running VM (--qmp, or --libvirt with --domain; paused until the
    /// <see cref="Vm"/> is disposed when <paramref name="pause"/>; the library's pause scope also resumes it on Ctrl-C,
    /// SIGTERM and process exit).
    /// </summary>
    public static Vm OpenVm(string? input, LiveTarget? live, VmOpenOptions options, bool pause)
    {
        if ((input is null) == (live is null))
        {
            throw new ArgumentException("give a SNAPSHOT file or a running VM (--qmp SOCKET, or --libvirt URI --domain NAME), one of them");
        }

        if (live is not null)
        {
            var attach = new VmAttachOptions
            {
                Pause = pause,
                Kernel = options.Kernel,
                ResumeFailed = e => Console.Error.WriteLine($"vmstate: warning: could not resume the guest: {e.Message}"),
            };
            return live.AttachAsync(attach).GetAwaiter().GetResult();
        }

        return Vm.Open(input!, options);
    }

    public static Option<string?> SnapshotName() => new("--snapshot", "-s")
    {
        Description = "for qcow2 images: the internal snapshot's id or name (default: the newest)",
    };

    public static Option<bool> Json() => new("--json")
    {
        Description = "print machine-readable JSON on stdout",
    };

    /// <summary>The --json option of a command that prints as it goes: one compact JSON object a line (<see cref="WriteJsonLine"/>).</summary>
    public static Option<bool> JsonLines(string each) => new("--json")
    {
        Description = $"one JSON object per {each} (a line each, flushed)",
    };

    /// <summary>The --main-ram option: the RAM blocks of the machine's main RAM, for snapshots that do not settle it.</summary>
    public static Option<string?> MainRam() => new("--main-ram")
    {
        Description = "the RAM blocks (memory-backend ids) that make the machine's RAM, comma-separated in NUMA node order, e.g. ram-node0,ram-node1; needed only when the snapshot does not tell",
    };

    /// <summary>The --main-ram value as block names (null when the option was not given).</summary>
    public static IReadOnlyList<string>? MainRamBlocks(string? value) =>
        value is null ? null : value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);

    public static Option<bool> Raw() => new("--raw")
    {
        Description = "treat an input with no known magic as a raw physical memory image",
    };

    /// <summary>Writes indented JSON to stdout with <paramref name="write"/>, then a newline.</summary>
    public static void WriteJson(Action<Utf8JsonWriter> write)
    {
        using Stream stdout = Console.OpenStandardOutput();
        WriteJson(stdout, write);
    }

    /// <summary>Writes indented JSON to <paramref name="output"/> with <paramref name="write"/>, then a newline: the CLI's --json document (the web server's API answers the same bytes).</summary>
    public static void WriteJson(Stream output, Action<Utf8JsonWriter> write)
    {
        using (var w = new Utf8JsonWriter(output, new JsonWriterOptions { Indented = true }))
        {
            write(w);
        }

        output.WriteByte((byte)'\n');
    }

    /// <summary>Writes one compact JSON value with <paramref name="write"/> to <paramref name="lines"/>, as one line.</summary>
    public static void WriteJsonLine(TextWriter lines, Action<Utf8JsonWriter> write)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer))
        {
            write(w);
        }

        lines.WriteLine(System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan));
    }

    /// <summary>Runs <paramref name="body"/>, turning input and I/O errors into a one-line message and exit code.</summary>
    public static int Run(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (VmStateFormatException e)
        {
            Console.Error.WriteLine($"vmstate: invalid input: {e.Message}");
            return 2;
        }
        catch (Exception e) when (e is KernelDataException or VmStateNotFoundException { Kind: VmStateObjectKind.Process })
        {
            // Guest data that does not make sense. A pid the guest does not have was reported with these before the
            // not-found type existed; the prefix stays so the CLI's output does not change.
            Console.Error.WriteLine($"vmstate: invalid data: {e.Message}");
            return 2;
        }

        catch (Exception e) when (e is VmStateNotFoundException or InvalidEditException)
        {
            // Something the user named is not there, or an edit the user asked for is refused: the message says
            // which, so it is printed as it is, like the other problems with the command line's values.
            Console.Error.WriteLine($"vmstate: {e.Message}");
            return 2;
        }
        catch (LiveVmGoneException e)
        {
            // QEMU went away: an I/O failure of the connection, as it was reported before it had its own type.
            Console.Error.WriteLine($"vmstate: I/O error: {e.Message}");
            return 1;
        }
        catch (FormatException e)
        {
            // Other malformed input (e.g. a MAC address that does not parse).
            Console.Error.WriteLine($"vmstate: invalid data: {e.Message}");
            return 2;
        }
        catch (FileNotFoundException e)
        {
            Console.Error.WriteLine($"vmstate: {e.Message}");
            return 2;
        }
        catch (ArgumentException e)
        {
            // Drop the " (Parameter 'x')" suffix: it names our code, not the user's input.
            string message = e.ParamName is null ? e.Message : e.Message.Replace($" (Parameter '{e.ParamName}')", string.Empty, StringComparison.Ordinal);
            Console.Error.WriteLine($"vmstate: {message}");
            return 2;
        }
        catch (IOException e)
        {
            Console.Error.WriteLine($"vmstate: I/O error: {e.Message}");
            return 1;
        }
        catch (TimeoutException e)
        {
            Console.Error.WriteLine($"vmstate: {e.Message}");
            return 1;
        }
        catch (VmState.Live.QmpException e)
        {
            Console.Error.WriteLine($"vmstate: {e.Message}");
            return 1;
        }
        catch (UnauthorizedAccessException e)
        {
            Console.Error.WriteLine($"vmstate: permission denied: {e.Message}");
            return 1;
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("vmstate: cancelled");
            return 130;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // A bug in vmstate, not bad input: say so, with the stack for the report.
            Console.Error.WriteLine($"vmstate: internal error ({e.GetType().Name}): {e.Message}");
            Console.Error.WriteLine(e.StackTrace);
            return 70;
        }
    }

    /// <summary>
    /// The options for <see cref="OpenVm"/>: block-cached reads when <paramref name="cacheReads"/> (random access:
    /// page tables, kernel structures), plain positional reads for one pass over RAM (extract, info).
    /// </summary>
    public static VmOpenOptions VmOptions(string? snapshot, bool raw, bool cacheReads, KernelLocatorOptions? kernel = null, string? mainRam = null, IndexCache? indexCache = null) =>
        new() { Snapshot = snapshot, AllowRaw = raw, CacheReads = cacheReads, Limits = ReaderLimits.Default, Kernel = kernel, MainRam = MainRamBlocks(mainRam), IndexCache = indexCache };
}
