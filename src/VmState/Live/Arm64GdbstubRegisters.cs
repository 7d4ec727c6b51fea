using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using VmState.Arch.Arm64;

namespace VmState.Live;

/// <summary>
/// The system registers of a running AArch64 guest's vCPUs (TTBR0_EL1, TTBR1_EL1, TCR_EL1, SCTLR_EL1, TPIDR_EL1,
/// SP_EL0, …), which QEMU 7.2's HMP "info registers" does not print (<c>target/arm/cpu.c</c>
/// aarch64_cpu_dump_state stops at PSTATE and the FP/SIMD registers), read from QEMU's gdbstub: its target
/// description includes <c>system-registers.xml</c> (<c>target/arm/gdbstub.c</c> arm_gen_dynamic_sysreg_xml, feature
/// <c>org.qemu.gdb.arm.sys.regs</c>), one register per cpreg with its gdb number, read with <c>Hg</c> + <c>p</c>.
/// The stub the VM has (TCP or a UNIX socket) is used when no client holds it, with a warning when it listens beyond
/// loopback; otherwise one is started on a free loopback port (HMP
/// <c>gdbserver tcp:127.0.0.1:PORT</c>) and stopped again (<c>gdbserver none</c>). Connecting stops the guest
/// (QEMU's <c>CHR_EVENT_OPENED</c>) and closing the connection without <c>D</c> leaves the run state alone, so the
/// caller pauses the guest around the read and resumes it (<see cref="LiveMachine.ReadArm64CpusAsync"/>).
/// </summary>
public static partial class Arm64GdbstubRegisters
{
    private const int ReplyTimeoutMs = 10_000;
    private const int MaxReply = 1 << 20;

    /// <summary>QEMU's names for registers it defines for both AArch32 and AArch64 (ARM_CP_STATE_BOTH: the AArch32 name).</summary>
    private static readonly Dictionary<string, string> QemuNames = new(StringComparer.Ordinal)
    {
        ["SCTLR_EL1"] = "SCTLR",
        ["CPACR_EL1"] = "CPACR",
        ["VBAR_EL1"] = "VBAR",
        ["CNTKCTL_EL1"] = "CNTKCTL",
        ["MIDR_EL1"] = "MIDR",
        ["MPIDR_EL1"] = "MPIDR",
    };

    /// <summary>
    /// The gdb register numbers of a target-description document's registers by name (<c>&lt;reg name=… regnum=…/&gt;</c>;
    /// a register without regnum follows the one before it, as gdb numbers them). Malformed entries are skipped; the
    /// first of two registers with one name wins.
    /// </summary>
    public static IReadOnlyDictionary<string, int> ParseRegisterNumbers(string xml)
    {
        ArgumentNullException.ThrowIfNull(xml);
        var numbers = new Dictionary<string, int>(StringComparer.Ordinal);
        int next = 0;
        foreach (Match m in RegTag().Matches(xml))
        {
            Match name = NameAttribute().Match(m.Value);
            if (!name.Success)
            {
                continue;
            }

            Match num = RegnumAttribute().Match(m.Value);
            int n = next;
            if (num.Success && !int.TryParse(num.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out n))
            {
                continue;
            }

            numbers.TryAdd(name.Groups[1].Value, n);
            next = n == int.MaxValue ? n : n + 1;
        }

        return numbers;
    }

    /// <summary>
    /// The <c>href</c>s of a target description's <c>xi:include</c> elements (QEMU splits its description into
    /// <c>aarch64-core.xml</c>, <c>system-registers.xml</c> and more).
    /// </summary>
    public static IReadOnlyList<string> ParseIncludes(string xml)
    {
        ArgumentNullException.ThrowIfNull(xml);
        return Include().Matches(xml).Select(m => m.Groups[1].Value).ToList();
    }

    /// <summary>
    /// Reads the system registers of <paramref name="cpus"/> (by their cpu_index, thread id index + 1) through QEMU's
    /// gdbstub into their state: the named ones of <see cref="Arm64SystemRegisters.All"/> QEMU has, and the banked
    /// SP_EL0, SP_EL1, ELR_EL1, SPSR_EL1. The guest must be paused (the caller's pause scope).
    /// </summary>
    /// <returns>
    /// A warning for the user, or null: the VM's own stub, which was used, listens on more than loopback
    /// (<see cref="GdbStubChardev.ExposureWarning"/>).
    /// </returns>
    /// <exception cref="IOException">The stub is held by another client, or does not answer as QEMU's does.</exception>
    public static async Task<string?> ReadAsync(QmpClient qmp, IReadOnlyList<Arm64CpuState> cpus, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(qmp);
        ArgumentNullException.ThrowIfNull(cpus);
        (GdbStubChardev stub, bool started) = await FindOrStartStubAsync(qmp, cancellationToken).ConfigureAwait(false);
        try
        {
            using Socket socket = stub.SocketPath is string path
                ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
                : new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            socket.ReceiveTimeout = ReplyTimeoutMs;
            socket.SendTimeout = ReplyTimeoutMs;
            if (stub.SocketPath is string socketPath)
            {
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancellationToken).ConfigureAwait(false);
            }
            else
            {
                await socket.ConnectAsync(stub.Host, stub.Port, cancellationToken).ConfigureAwait(false);
            }

            using var stream = new NetworkStream(socket, ownsSocket: false);

            // QEMU answers 'p' only after the client read target.xml (gdb_has_xml); the system registers are an include.
            string target = ReadDocument(stream, "target.xml");
            string? sysAnnex = ParseIncludes(target).FirstOrDefault(h => h.Contains("system", StringComparison.OrdinalIgnoreCase))
                ?? throw new IOException($"QEMU's gdbstub at {stub.Endpoint} offers no system-registers description (target.xml includes {string.Join(", ", ParseIncludes(target))})");
            IReadOnlyDictionary<string, int> numbers = ParseRegisterNumbers(ReadDocument(stream, sysAnnex));
            foreach (Arm64CpuState cpu in cpus)
            {
                if (Send(stream, $"Hg{cpu.Index + 1:x}") != "OK")
                {
                    throw new IOException($"QEMU's gdbstub did not select vCPU {cpu.Index}");
                }

                foreach (Arm64SystemRegister reg in Arm64SystemRegisters.All)
                {
                    if (Number(numbers, reg.Name) is int n && ReadRegister(stream, n) is ulong v)
                    {
                        cpu.SetSystemRegister(reg.KvmId, v);
                    }
                }

                cpu.SpEl[0] = Banked(stream, numbers, "SP_EL0") ?? cpu.SpEl[0];
                cpu.SpEl[1] = Banked(stream, numbers, "SP_EL1") ?? cpu.SpEl[1];
                cpu.ElrEl[1] = Banked(stream, numbers, "ELR_EL1") ?? cpu.ElrEl[1];
                cpu.BankedSpsr[1] = Banked(stream, numbers, "SPSR_EL1") ?? cpu.BankedSpsr[1];
            }

            // No 'D': QEMU 7.2 answers a detach by resuming the VM (gdb_continue); closing the connection changes nothing.
            return started ? null : stub.ExposureWarning;
        }
        catch (SocketException e)
        {
            throw new IOException($"QEMU's gdbstub at {stub.Endpoint}: {e.Message}", e);
        }
        finally
        {
            if (started)
            {
                await qmp.HumanMonitorCommandAsync("gdbserver none", cancellationToken: CancellationToken.None).ConfigureAwait(false);
            }
        }
    }

    private static int? Number(IReadOnlyDictionary<string, int> numbers, string name) =>
        numbers.TryGetValue(name, out int n) ? n : QemuNames.TryGetValue(name, out string? q) && numbers.TryGetValue(q, out n) ? n : null;

    private static ulong? Banked(NetworkStream stream, IReadOnlyDictionary<string, int> numbers, string name) =>
        numbers.TryGetValue(name, out int n) ? ReadRegister(stream, n) : null;

    private static ulong? ReadRegister(NetworkStream stream, int n)
    {
        string reply = Send(stream, $"p{n:x}");
        if (reply.Length is 0 or > 16 || reply.Length % 2 != 0 || reply[0] == 'E' || !IsHex(reply))
        {
            return null;
        }

        Span<byte> bytes = stackalloc byte[8];
        bytes.Clear();
        Convert.FromHexString(reply).CopyTo(bytes);
        return BinaryPrimitives.ReadUInt64LittleEndian(bytes);
    }

    private static bool IsHex(string s)
    {
        foreach (char c in s)
        {
            if (!char.IsAsciiHexDigit(c))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// The VM's own stub (query-chardev, label <c>gdb</c>: TCP or a UNIX socket, parsed as the tracer parses it) when no
    /// client holds it, else a new one on a free loopback port.
    /// </summary>
    private static async Task<(GdbStubChardev Stub, bool Started)> FindOrStartStubAsync(QmpClient qmp, CancellationToken cancellationToken)
    {
        JsonElement chardevs = await qmp.ExecuteAsync("query-chardev", null, null, cancellationToken).ConfigureAwait(false);
        foreach (JsonElement d in chardevs.EnumerateArray())
        {
            if (d.TryGetProperty("label", out JsonElement label) && label.GetString() == GdbStubChardev.Label)
            {
                string filename = d.TryGetProperty("filename", out JsonElement f) ? f.GetString() ?? string.Empty : string.Empty;
                if (!GdbStubChardev.TryParse(filename, out GdbStubChardev? stub) || stub is null)
                {
                    throw new IOException($"QEMU's gdbstub listens on \"{filename}\"; vmstate connects to TCP and UNIX-socket stubs only");
                }

                // Starting another one would replace it (gdbserver_start closes the old chardev) and cut its client off.
                return stub.InUse
                    ? throw new IOException($"QEMU's gdbstub ({stub.Endpoint}{(stub.SocketPath is null ? $", client {stub.Peer}" : string.Empty)}) is held by another client; detach that client first")
                    : (stub, false);
            }
        }

        using (var probe = new TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            int port = ((IPEndPoint)probe.LocalEndpoint).Port;
            probe.Stop();
            string said = await qmp.HumanMonitorCommandAsync($"gdbserver tcp:127.0.0.1:{port}", cancellationToken: cancellationToken).ConfigureAwait(false);
            if (!said.Contains("Waiting for gdb connection", StringComparison.Ordinal))
            {
                throw new IOException($"QEMU did not start a gdbstub on 127.0.0.1:{port}: {said.Trim()}");
            }

            return (new GdbStubChardev("127.0.0.1", port, null, "127.0.0.1"), true);
        }
    }

    private static string ReadDocument(NetworkStream stream, string annex)
    {
        var doc = new StringBuilder();
        while (true)
        {
            string reply = Send(stream, $"qXfer:features:read:{annex}:{doc.Length:x},ffb");
            if (reply.Length == 0 || reply[0] is not ('m' or 'l'))
            {
                throw new IOException($"QEMU's gdbstub did not send {annex}: \"{Shorten(reply)}\"");
            }

            doc.Append(reply, 1, reply.Length - 1);
            if (reply[0] == 'l' || reply.Length == 1 || doc.Length > MaxReply)
            {
                return doc.ToString();
            }
        }
    }

    private static string Shorten(string s) => s.Length <= 80 ? s : s[..80] + "…";

    private static string Send(NetworkStream stream, string payload)
    {
        byte sum = 0;
        foreach (char c in payload)
        {
            sum += (byte)c;
        }

        stream.Write(Encoding.ASCII.GetBytes($"${payload}#{sum:x2}"));
        try
        {
            return ReadReply(stream);
        }
        catch (IOException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.TimedOut })
        {
            throw new IOException($"QEMU's gdbstub did not answer \"{payload}\" within {ReplyTimeoutMs / 1000} s", e);
        }
    }

    /// <summary>The next packet's payload with binary escapes ('}' + byte ^ 0x20) undone, stop notifications skipped.</summary>
    private static string ReadReply(NetworkStream stream)
    {
        var sb = new StringBuilder();
        int state = 0;
        bool escaped = false;
        while (true)
        {
            int b = stream.ReadByte();
            if (b < 0)
            {
                throw new IOException("QEMU's gdbstub closed the connection");
            }

            char ch = (char)b;
            if (state == 0)
            {
                state = ch == '$' ? 1 : 0;
            }
            else if (state == 1)
            {
                if (escaped)
                {
                    sb.Append((char)(b ^ 0x20));
                    escaped = false;
                }
                else if (ch == '#')
                {
                    state = 2;
                }
                else if (ch == '}')
                {
                    escaped = true;
                }
                else if (sb.Length < MaxReply)
                {
                    sb.Append(ch);
                }
            }
            else if (++state == 4)
            {
                string reply = sb.ToString();
                if (reply.Length > 0 && reply[0] is 'T' or 'S')
                {
                    // A stop notification, not the reply: read on.
                    sb.Clear();
                    state = 0;
                    continue;
                }

                return reply;
            }
        }
    }

    [GeneratedRegex(@"<reg\s[^>]*>")]
    private static partial Regex RegTag();

    [GeneratedRegex(@"\sname=""([^""]{1,128})""")]
    private static partial Regex NameAttribute();

    [GeneratedRegex(@"\sregnum=""([0-9]{1,9})""")]
    private static partial Regex RegnumAttribute();

    [GeneratedRegex(@"<xi:include\s+href=""([^""]{1,128})""")]
    private static partial Regex Include();
}
