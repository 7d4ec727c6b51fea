using System.Buffers.Binary;
using VmState.Arch.Arm64;
using VmState.Arch.X86;
using VmState.Formats.Migration.Devices;
using VmState.Formats.Migration;
using VmState.IO;
using VmState.Machine;

namespace VmState.Editing;

/// <summary>
/// High-level edits of a snapshot read from a migration stream or qcow2 snapshot: guest memory by physical or
/// virtual address, vCPU registers, device fields by path, NIC MAC addresses. Every edit is validated when it is
/// made, so a bad edit fails before anything is written; <see cref="Save(string, CancellationToken)"/> writes the new stream.
/// </summary>
public sealed class SnapshotEditor
{
    private readonly MachineState _machine;
    private readonly MigrationStreamEditor _stream;
    private readonly List<string> _log = [];

    /// <summary>Starts editing <paramref name="machine"/>.</summary>
    public SnapshotEditor(MachineState machine)
    {
        _machine = machine;
        _stream = new MigrationStreamEditor(machine);
        Memory = new EditedMemory(machine.Memory, this);
    }

    /// <summary>What was changed, one line per edit.</summary>
    public IReadOnlyList<string> Log => _log;

    /// <summary>The underlying stream editor.</summary>
    public MigrationStreamEditor Stream => _stream;

    /// <summary>Guest-physical memory as edited so far; writing to it is <see cref="WritePhysical"/>.</summary>
    public EditedMemory Memory { get; }

    /// <summary>Writes bytes at a guest-physical address.</summary>
    public void WritePhysical(ulong address, ReadOnlySpan<byte> data)
    {
        _stream.WritePhysical(address, data);
        _log.Add($"wrote {data.Length} bytes at guest-physical 0x{address:x}");
    }

    /// <summary>Writes bytes at a virtual address translated with vCPU <paramref name="cpu"/>'s page tables (or <paramref name="cr3"/>).</summary>
    /// <remarks>On an AArch64 snapshot the vCPU's TTBR0_EL1/TTBR1_EL1 translate, and <paramref name="cr3"/> stands for
    /// the table base of the half the address is in.</remarks>
    public void WriteVirtual(ulong address, ReadOnlySpan<byte> data, int cpu = 0, ulong? cr3 = null)
    {
        Func<ulong, (ulong? Pa, string? Failure)> translate = TranslatorFor(cpu, cr3, address);
        var physical = new List<(ulong Pa, int Start, int Length)>();
        int done = 0;
        while (done < data.Length)
        {
            ulong va = address + (ulong)done;
            (ulong? mapped, string? failure) = translate(va);
            if (mapped is not ulong pa)
            {
                throw new InvalidEditException(va, "guest-virtual", $"virtual 0x{va:x} is not mapped ({failure})");
            }

            int n = (int)Math.Min((ulong)(data.Length - done), 0x1000 - (va & 0xFFF));
            physical.Add((pa, done, n));
            done += n;
        }

        foreach ((ulong pa, int start, int length) in physical)
        {
            _stream.WritePhysical(pa, data.Slice(start, length));
        }

        _log.Add($"wrote {data.Length} bytes at virtual 0x{address:x} (vCPU {cpu} page tables)");
    }

    /// <summary>
    /// Sets a register of vCPU <paramref name="cpu"/>: any <see cref="X86Register.Editable"/> register of
    /// <see cref="X86Registers.All"/> (rax..r15, rip, rflags, cr0-cr4, efer, segment selectors and bases,
    /// kernel_gs_base, star, lstar, cstar, fmask), by name or alias.
    /// </summary>
    /// <remarks>On an AArch64 snapshot: x0–x30, sp, pc, pstate, sp_el0–3, elr_el1–3, spsr_el1, v0–v31 (zero-extended
    /// to 128 bits), fpsr, fpcr and the system registers of the vCPU's cpreg list by name (see hardware.json's
    /// "systemRegisters").</remarks>
    public void SetRegister(int cpu, string register, ulong value) => SetRegister(cpu, register, (UInt128)value);

    /// <summary>
    /// Sets a register of vCPU <paramref name="cpu"/> to a value of up to 128 bits: the AArch64 vector registers
    /// v0–v31 (alias q0–q31) take all 128; every other register (see <see cref="SetRegister(int, string, ulong)"/>)
    /// refuses a value that does not fit in 64 bits.
    /// </summary>
    /// <remarks>On an AArch64 vCPU with SVE, vN is the low 128 bits of zN: the edit changes those and keeps zN's upper
    /// bits, as a gdbstub write of vN does. FPSR and FPCR share the vfp subsection's fpscr word; bits QEMU 7.2 would
    /// drop on load (RES0 bits, FPCR's trap enables) are refused.</remarks>
    /// <exception cref="InvalidEditException">An unknown register, a value wider than the register, or bits it cannot hold.</exception>
    public void SetRegister(int cpu, string register, UInt128 value)
    {
        if (_machine.Architecture == Arch.CpuArchitecture.Arm64)
        {
            SetArm64Register(cpu, register, value);
            return;
        }

        if (value > ulong.MaxValue)
        {
            throw new InvalidEditException(register, $"{register}: 0x{value:x} does not fit in 64 bits (VmState edits the x86 general, segment, control and syscall registers, none wider)");
        }

        SetX86Register(cpu, register, (ulong)value);
    }

    private void SetX86Register(int cpu, string register, ulong value)
    {

        DeviceState section = _machine.Devices.FirstOrDefault(d => d.IdStr == "cpu" && d.InstanceId == cpu)
            ?? throw new VmStateNotFoundException(VmStateObjectKind.Cpu, cpu.ToString(System.Globalization.CultureInfo.InvariantCulture), $"no vCPU {cpu}: the snapshot has {_machine.Cpus.Count} ({string.Join(", ", _machine.Cpus.Select(c => c.Index))})");
        if (X86Registers.Find(register) is not { Editable: true, StateField: X86StateField where })
        {
            throw new InvalidEditException(register, $"unknown register \"{register}\" (known: {string.Join(", ", X86Registers.All.Where(r => r.Editable).Select(r => r.Name))})");
        }

        DeviceField field = X86CpuSectionDecoder.FindField(section.State!, where)
            ?? throw new InvalidEditException(register, $"the cpu section has no field {where.Name}{(where.Member is null ? string.Empty : "." + where.Member)}");
        _stream.SetField(field, value);
        _log.Add($"vCPU {cpu}: {register.ToLowerInvariant()} = 0x{value:x}");
    }

    private void SetArm64Register(int cpu, string register, UInt128 value)
    {
        Arm64CpuState c = _machine.Arm64Cpus.FirstOrDefault(x => x.Index == cpu)
            ?? throw new VmStateNotFoundException(VmStateObjectKind.Cpu, cpu.ToString(System.Globalization.CultureInfo.InvariantCulture), $"no vCPU {cpu}: the snapshot has {_machine.Arm64Cpus.Count}");
        DeviceState section = _machine.Devices.FirstOrDefault(d => d.IdStr == "cpu" && d.InstanceId == cpu && d.State is not null)
            ?? throw new VmStateNotFoundException(VmStateObjectKind.Cpu, cpu.ToString(System.Globalization.CultureInfo.InvariantCulture), $"no cpu section for vCPU {cpu}");
        string name = Arm64RegisterFields.Set(_stream, section, c, register, value);
        _log.Add(value > ulong.MaxValue || name[0] == 'v' ? $"vCPU {cpu}: {name} = 0x{value:x32}" : $"vCPU {cpu}: {name} = 0x{value:x}");
    }

    /// <summary>
    /// Sets a device field by path, as hardware.json and <c>DeviceFieldSearch.Walk</c> name it (e.g.
    /// "mac_reg[RCTL]", "parent_obj.config[0]", "eeprom_data[3]", "e1000/full_mac_state.mac_reg[5376]"). Integers take
    /// a number; byte fields take hex bytes (replacing the start of the field).
    /// </summary>
    public void SetDeviceField(string device, string path, string value)
    {
        DeviceState d = FindDevice(device);
        DeviceField field = DeviceFieldSearch.Walk(d.State!).Where(x => x.Path == path).Select(x => x.Field).FirstOrDefault()
            ?? throw new InvalidEditException(path, $"device {d.Key} has no field \"{path}\" (fields: {string.Join(", ", DeviceFieldSearch.Walk(d.State!).Select(x => x.Path).Take(20))}{(DeviceFieldSearch.Walk(d.State!).Count() > 20 ? ", …" : string.Empty)})");
        if (field.Kind is FieldKind.Integer or FieldKind.Bool)
        {
            (ulong v, bool negative) = ParseInteger(value, path);
            _stream.SetField(field, v, negative);
        }
        else if (field.Kind == FieldKind.Bytes)
        {
            byte[] bytes = ParseHex(value, path);
            _stream.SetFieldBytes(field, 0, bytes);
        }
        else
        {
            throw new InvalidEditException(path, $"field {path} of {d.Key} is a {field.Kind}; name one of its members (e.g. {path}[0] or {path}.member)");
        }

        _log.Add($"{d.Key}: {path} = {value}");
    }

    /// <summary>
    /// Sets the MAC address of a NIC everywhere the device keeps it. e1000: EEPROM words 0-2 (and the checksum word
    /// 63 so the words still sum to 0xBABA), RAL0/RAH0 in mac_reg[0] and in the full_mac_state subsection.
    /// virtio-net: the device's own n->mac and the config-space copy.
    /// </summary>
    public void SetMac(string device, byte[] mac)
    {
        if (mac.Length != 6)
        {
            throw new ArgumentException("a MAC address has 6 bytes");
        }

        DeviceState d = FindDevice(device);
        VmsdState s = d.State!;
        if (d.IdStr.EndsWith("/e1000", StringComparison.Ordinal))
        {
            IReadOnlyList<DeviceField> eeprom = s.Field("eeprom_data")?.Elements ?? throw new InvalidEditException(d.Key, $"{d.Key} has no eeprom_data");
            ushort[] words = new ushort[64];
            for (int i = 0; i < 64; i++)
            {
                words[i] = (ushort)eeprom[i].Integer;
            }

            for (int i = 0; i < 3; i++)
            {
                words[i] = (ushort)(mac[2 * i] | (mac[(2 * i) + 1] << 8));
            }

            // EEPROM checksum: words 0..63 sum to 0xBABA (Intel 8254x manual §5.6.1; QEMU hw/net/e1000.c).
            ushort sum = 0;
            for (int i = 0; i < 63; i++)
            {
                sum += words[i];
            }

            words[63] = (ushort)(0xBABA - sum);
            foreach (int i in new[] { 0, 1, 2, 63 })
            {
                _stream.SetField(eeprom[i], words[i]);
            }

            uint ral = BinaryPrimitives.ReadUInt32LittleEndian(mac);
            uint rahLow = (uint)(mac[4] | (mac[5] << 8));
            if (s.Field("mac_reg[0]")?.Elements is { Count: >= 2 } ra)
            {
                _stream.SetField(ra[0], ral);
                _stream.SetField(ra[1], (ra[1].Integer & 0xFFFF0000) | rahLow);
            }

            if (s.Subsection("e1000/full_mac_state")?.Field("mac_reg")?.Elements is { Count: > 0x1501 } full)
            {
                _stream.SetField(full[0x1500], ral);
                _stream.SetField(full[0x1501], (full[0x1501].Integer & 0xFFFF0000) | rahLow);
            }
        }
        else if (d.IdStr.EndsWith("/virtio-net", StringComparison.Ordinal))
        {
            (int at, byte[] _) = WellKnownDevices.FindVirtioNetMacOffset(d) ?? throw new InvalidEditException(d.Key, $"the virtio state of {d.Key} does not parse; cannot find its MAC");
            DeviceField virtio = s.Field("virtio")!;
            _stream.SetFieldBytes(virtio, at, mac);
            if (WellKnownDevices.FindVirtioNetConfigOffset(d) is int config)
            {
                _stream.SetFieldBytes(virtio, config, mac);
            }
        }
        else
        {
            throw new InvalidEditException(d.Key, $"{d.Key} is not an e1000 or virtio-net NIC");
        }

        _log.Add($"{d.Key}: MAC = {MacAddress.Format(mac)}");
    }

    /// <summary>Writes the edited snapshot as a migration stream.</summary>
    public long Save(string path, CancellationToken cancellationToken = default) => _stream.Save(path, cancellationToken);

    /// <summary>Writes the edited snapshot as a migration stream into <paramref name="output"/>. Returns bytes written.</summary>
    public long WriteTo(Stream output, CancellationToken cancellationToken = default) => _stream.WriteTo(output, cancellationToken);

    /// <summary>Writes the edited snapshot as a migration stream under <paramref name="rules"/> (inputs, permission, replacing).</summary>
    public long Save(string path, IO.OutputRules rules, CancellationToken cancellationToken = default) => _stream.Save(path, rules, cancellationToken);

    /// <summary>
    /// A device by idstr, by "idstr#instance", or by a unique suffix after the PCI address ("e1000", "virtio-net",
    /// "serial").
    /// </summary>
    public DeviceState FindDevice(string name)
    {
        foreach (DeviceState d in _machine.Devices)
        {
            if (d.Key == name || (d.IdStr == name && d.InstanceId == 0))
            {
                return d.State is null ? throw new InvalidEditException(name, $"{name} has no decoded state") : d;
            }
        }

        var matches = _machine.Devices.Where(d => d.IdStr.EndsWith("/" + name, StringComparison.Ordinal)).ToList();
        return matches.Count switch
        {
            1 => matches[0],
            0 => throw new VmStateNotFoundException(VmStateObjectKind.Device, name, $"no device \"{name}\" (devices: {string.Join(", ", _machine.Devices.Select(d => d.Key).Distinct())})"),
            _ => throw new ArgumentException($"\"{name}\" matches {string.Join(", ", matches.Select(d => d.Key))}; give the full id"),
        };
    }

    private Func<ulong, (ulong? Pa, string? Failure)> TranslatorFor(int cpu, ulong? cr3, ulong address)
    {
        if (_machine.Architecture == Arch.CpuArchitecture.Arm64)
        {
            bool upper = ((address >> 55) & 1) != 0;
            Arm64AddressSpace arm = CpuAddressSpaces.OfArm64(_machine, cpu, upper ? null : cr3, upper ? cr3 : null);
            return va =>
            {
                try
                {
                    Arm64Translation t = arm.Translate(va);
                    return (t.PhysicalAddress, t.Failure);
                }
                catch (NotSupportedException e)
                {
                    return (null, e.Message);
                }
            };
        }

        AddressSpace space = SpaceFor(cpu, cr3);
        return va =>
        {
            Translation t = space.Translate(va);
            return (t.PhysicalAddress, t.Failure);
        };
    }

    private AddressSpace SpaceFor(int cpu, ulong? cr3)
    {
        if (cpu < 0 || cpu >= _machine.Cpus.Count)
        {
            throw new VmStateNotFoundException(VmStateObjectKind.Cpu, cpu.ToString(System.Globalization.CultureInfo.InvariantCulture), $"no vCPU {cpu}");
        }

        X86CpuState c = _machine.Cpus[cpu];
        AddressSpace space = AddressSpace.Of(_machine.Memory, c);
        return cr3 is ulong root ? new AddressSpace(_machine.Memory, space.Mode, root, (c.Cr4 & 0x10) != 0) : space;
    }

    /// <summary>Parses 0x-hex, decimal or negative decimal.</summary>
    public static (ulong Value, bool Negative) ParseInteger(string text, string what)
    {
        string t = text.Trim();
        bool negative = t.StartsWith('-');
        if (negative)
        {
            t = t[1..];
        }

        bool ok = t.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? ulong.TryParse(t.AsSpan(2), System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture, out ulong v)
            : ulong.TryParse(t, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out v);
        if (!ok || (negative && v > (ulong)long.MaxValue + 1))
        {
            throw new ArgumentException($"{what}: \"{text}\" is not a number (0x-hex or decimal)");
        }

        return (negative ? (ulong)-(long)v : v, negative);
    }

    /// <summary>
    /// Parses a register value for <see cref="SetRegister(int, string, UInt128)"/>: 0x-hex of up to 32 digits (most
    /// significant first, "_" allowed between digits, as in 0x0011223344556677_8899aabbccddeeff), a decimal up to
    /// 2^128-1, or a negative decimal down to -2^63 (the 64-bit two's complement, as <see cref="ParseInteger"/> gives).
    /// </summary>
    /// <exception cref="ArgumentException">Not such a number; the message names <paramref name="what"/> and the text.</exception>
    public static UInt128 ParseRegisterValue(string text, string what)
    {
        ArgumentNullException.ThrowIfNull(text);
        string t = text.Trim();
        if (t.StartsWith('-'))
        {
            return ParseInteger(t, what).Value;
        }

        if (t.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
        {
            ReadOnlySpan<char> digits = t.AsSpan(2);
            Span<char> clean = stackalloc char[32];
            int n = 0;
            for (int i = 0; i < digits.Length; i++)
            {
                char c = digits[i];
                if (c == '_' && i > 0 && i < digits.Length - 1 && digits[i - 1] != '_')
                {
                    continue;
                }

                if (!char.IsAsciiHexDigit(c))
                {
                    throw new ArgumentException($"{what}: \"{text}\" is not a number (0x-hex or decimal)");
                }

                if (n == 32)
                {
                    throw new ArgumentException($"{what}: \"{text}\" has more than 32 hex digits (128 bits)");
                }

                clean[n++] = c;
            }

            if (n == 0)
            {
                throw new ArgumentException($"{what}: \"{text}\" is not a number (0x-hex or decimal)");
            }

            return UInt128.Parse(clean[..n], System.Globalization.NumberStyles.AllowHexSpecifier, System.Globalization.CultureInfo.InvariantCulture);
        }

        return UInt128.TryParse(t, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out UInt128 v)
            ? v
            : throw new ArgumentException($"{what}: \"{text}\" is not a number (0x-hex or decimal, at most 128 bits)");
    }

    /// <summary>Parses hex bytes ("0a1b2c", "0a 1b 2c" or "0a:1b:2c").</summary>
    public static byte[] ParseHex(string text, string what)
    {
        string t = text.Replace(" ", string.Empty, StringComparison.Ordinal).Replace(":", string.Empty, StringComparison.Ordinal);
        if (t.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
        {
            t = t[2..];
        }

        try
        {
            return Convert.FromHexString(t);
        }
        catch (FormatException)
        {
            throw new ArgumentException($"{what}: \"{text}\" is not hex bytes (e.g. 48656c6c6f)");
        }
    }
}
