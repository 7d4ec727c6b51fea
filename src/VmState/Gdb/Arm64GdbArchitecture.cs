using System.Buffers.Binary;
using VmState.Arch.Arm64;
using VmState.Editing;
using VmState.Memory;

namespace VmState.Gdb;

/// <summary>
/// AArch64 for the GDB server: the registers of <see cref="Arm64TargetDescription"/> from <see cref="Arm64CpuState"/>,
/// memory through the vCPU's EL1&amp;0 stage 1 tables (<see cref="Arm64AddressSpace"/>: TTBR0_EL1 for the lower half,
/// TTBR1_EL1 for the kernel's upper half, as the MMU chooses by bit 55). Writes of x0–x30, sp, pc, cpsr, the system
/// registers and the banked SP_EL0/SP_EL1/ELR_EL1/SPSR_EL1 go to the snapshot editor's register edits; the vector and
/// FP registers are read-only.
/// </summary>
internal sealed class Arm64GdbArchitecture : IGdbTargetArchitecture
{
    private const int CoreCount = Arm64Architecture.GdbCpsr + 1;
    private readonly IReadOnlyList<Arm64CpuState> _cpus;
    private readonly IPhysicalMemory _memory;
    private readonly Arm64TargetDescription _description;
    private readonly Dictionary<int, Arm64AddressSpace> _spaces = new();

    public Arm64GdbArchitecture(IReadOnlyList<Arm64CpuState> cpus, IPhysicalMemory memory)
    {
        _cpus = cpus;
        _memory = memory;
        _description = Arm64TargetDescription.For(cpus);
    }

    /// <inheritdoc />
    public IReadOnlyList<GdbRegister> Registers => _description.Registers;

    /// <inheritdoc />
    public string TargetXml => _description.Xml;

    /// <inheritdoc />
    public int CpuCount => _cpus.Count;

    /// <inheritdoc />
    public int CpuIndex(int cpu) => _cpus[cpu].Index;

    /// <inheritdoc />
    public string DescribeThread(int cpu)
    {
        Arm64CpuState c = _cpus[cpu];
        return $"vCPU {c.Index}, {c.DescribeMode()}, TTBR0_EL1 0x{c.Ttbr0El1:x}, TTBR1_EL1 0x{c.Ttbr1El1:x}";
    }

    /// <inheritdoc />
    public byte[] ReadRegister(int cpu, int n)
    {
        Arm64CpuState c = _cpus[cpu];
        GdbRegister reg = _description.Registers[n];
        byte[] value = new byte[reg.Bits / 8];
        if (n < CoreCount)
        {
            ulong v = n switch
            {
                Arm64Architecture.GdbSp => c.Sp,
                Arm64Architecture.GdbPc => c.Pc,
                Arm64Architecture.GdbCpsr => c.Pstate,
                _ => c.X[n],
            };
            Put(value, v);
            return value;
        }

        if (reg.Feature == Arm64TargetDescription.Fpu)
        {
            int fp = n - Arm64Architecture.GdbV0;
            if (fp < 32)
            {
                c.V.AsSpan(fp * 16, 16).CopyTo(value);
            }
            else
            {
                Put(value, fp == 32 ? c.Fpsr : c.Fpcr);
            }

            return value;
        }

        int sys = n - (_description.HasFpu ? Arm64Architecture.GdbFpcr + 1 : CoreCount);
        ulong s = sys < _description.SystemRegisters.Count
            ? c.SystemRegister(_description.SystemRegisters[sys]) ?? 0
            : (sys - _description.SystemRegisters.Count) switch
            {
                0 => c.SpEl[0],
                1 => c.SpEl[1],
                2 => c.ElrEl[1],
                _ => c.BankedSpsr[1],
            };
        Put(value, s);
        return value;
    }

    /// <inheritdoc />
    public string? WriteRefusal(int n) => _description.Registers[n].Feature == Arm64TargetDescription.Fpu
        ? $"writing {_description.Registers[n].Name} is not supported (the vector and FP registers are read-only)"
        : null;

    /// <inheritdoc />
    public void WriteRegister(SnapshotEditor editor, int cpu, int n, ReadOnlySpan<byte> value)
    {
        if (WriteRefusal(n) is string refusal)
        {
            throw new ArgumentException(refusal);
        }

        Span<byte> tmp = stackalloc byte[8];
        tmp.Clear();
        value[..Math.Min(8, value.Length)].CopyTo(tmp);
        ulong v = BinaryPrimitives.ReadUInt64LittleEndian(tmp);
        Arm64CpuState c = _cpus[cpu];

        // The editor finds the field by the register's name (x0-x30, sp, pc, cpsr, a system register of the cpreg list,
        // SP_EL0/SP_EL1/ELR_EL1/SPSR_EL1) and refuses what the cpu section cannot hold, before anything changes here.
        editor.SetRegister(c.Index, _description.Registers[n].Name, v);
        if (n < CoreCount)
        {
            switch (n)
            {
                case Arm64Architecture.GdbSp: c.Sp = v; break;
                case Arm64Architecture.GdbPc: c.Pc = v; break;
                case Arm64Architecture.GdbCpsr: c.Pstate = (uint)v; break;
                default: c.X[n] = v; break;
            }

            return;
        }

        int sys = n - (_description.HasFpu ? Arm64Architecture.GdbFpcr + 1 : CoreCount);
        if (sys < _description.SystemRegisters.Count)
        {
            c.SetSystemRegister(_description.SystemRegisters[sys].KvmId, v);
            return;
        }

        switch (sys - _description.SystemRegisters.Count)
        {
            case 0: c.SpEl[0] = v; break;
            case 1: c.SpEl[1] = v; break;
            case 2: c.ElrEl[1] = v; break;
            default: c.BankedSpsr[1] = v; break;
        }
    }

    /// <inheritdoc />
    public int ReadVirtual(int cpu, ulong address, Span<byte> destination)
    {
        try
        {
            return Space(cpu).Read(address, destination);
        }
        catch (NotSupportedException)
        {
            // A granule or address size the walker does not support: nothing is readable, as for an unmapped address.
            return 0;
        }
    }

    /// <inheritdoc />
    public void WriteVirtual(SnapshotEditor editor, int cpu, ulong address, byte[] data)
    {
        // Every page is translated before the first byte is written, so a write that leaves the mapping changes nothing.
        var pieces = new List<(ulong Pa, int Start, int Length)>();
        for (int done = 0; done < data.Length;)
        {
            ulong va = address + (ulong)done;
            Arm64Translation t;
            try
            {
                t = Space(cpu).Translate(va);
            }
            catch (NotSupportedException e)
            {
                throw new InvalidEditException(va, "guest-virtual", e.Message);
            }

            if (t.PhysicalAddress is not ulong pa)
            {
                throw new InvalidEditException(va, "guest-virtual", $"virtual 0x{va:x} is not mapped ({t.Failure})");
            }

            int n = (int)Math.Min((ulong)(data.Length - done), 0x1000 - (va & 0xFFF));
            pieces.Add((pa, done, n));
            done += n;
        }

        foreach ((ulong pa, int start, int length) in pieces)
        {
            editor.WritePhysical(pa, data.AsSpan(start, length));
        }
    }

    /// <inheritdoc />
    public void Invalidate()
    {
        // Arm64AddressSpace keeps no cached tables; the spaces only hold the table bases.
    }

    private static void Put(byte[] value, ulong v)
    {
        Span<byte> tmp = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(tmp, v);
        tmp[..Math.Min(8, value.Length)].CopyTo(value);
    }

    private Arm64AddressSpace Space(int cpu)
    {
        if (!_spaces.TryGetValue(cpu, out Arm64AddressSpace? space))
        {
            space = Arm64AddressSpace.Of(_memory, _cpus[cpu]);
            _spaces[cpu] = space;
        }

        return space;
    }
}
