using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Xml.Linq;
using VmState.Arch.X86;
using VmState.Editing;
using VmState.Export;
using VmState.Formats.Elf;
using VmState.Formats.Migration;
using VmState.Gdb;
using VmState.IO;
using VmState.Machine;
using VmState.Tests.Gdb;
using VmState.Tests.Support;

namespace VmState.Tests.Arch;

public sealed class X86RegistersTests : IDisposable
{
    // The "registers" block of hardware.json as the writer emitted it before the table existed (order included):
    // scripts that read the file by position or name must see the same block.
    private static readonly string[] s_hardwareRegisters =
    [
        "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
        "rip", "rflags", "cr0", "cr2", "cr3", "cr4", "efer", "kernel_gs_base", "star", "lstar", "cstar", "fmask",
        "sysenter_cs", "sysenter_esp", "sysenter_eip", "xcr0", "mxcsr", "fcw", "fsw", "hflags",
        "dr0", "dr1", "dr2", "dr3", "dr4", "dr5", "dr6", "dr7",
    ];

    // Linux arch/x86/include/asm/user_64.h struct user_regs_struct, written out here rather than taken from the table.
    private static readonly string[] s_userRegs =
    [
        "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi", "rdi",
        "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs",
    ];

    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-regs-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void HardwareJsonAndXmlListTheSameRegistersWithTheSameValues()
    {
        using MachineState m = Machine();
        X86CpuState cpu = m.Cpus[0];
        Dictionary<string, ulong> expected = FillDistinct(cpu);

        var json = new MemoryStream();
        HardwareJsonWriter.Write(m, json);
        using JsonDocument doc = JsonDocument.Parse(json.ToArray());
        var fromJson = doc.RootElement.GetProperty("cpus")[0].GetProperty("registers").EnumerateObject()
            .Select(p => (p.Name, Value: Convert.ToUInt64(p.Value.GetString(), 16))).ToList();

        var xml = new MemoryStream();
        HardwareXmlWriter.Write(m, xml);
        xml.Position = 0;
        var fromXml = XDocument.Load(xml).Root!.Element("cpus")!.Elements("cpu").First().Elements("register")
            .Select(e => (Name: (string)e.Attribute("name")!, Value: Convert.ToUInt64((string)e.Attribute("value")!, 16))).ToList();

        Assert.Equal(s_hardwareRegisters, fromJson.Select(r => r.Name));
        Assert.Equal(fromJson, fromXml);
        foreach ((string name, ulong value) in fromJson)
        {
            Assert.Equal(expected[name], value);
        }

        // Distinct values: a writer that printed one register under another's name would show here.
        Assert.Equal(fromJson.Count, fromJson.Select(r => r.Value).Distinct().Count());
    }

    [Fact]
    public void EveryEditableRegisterRoundTripsThroughSetRegister()
    {
        byte[] original = new StreamBuilder().Block("pc.ram", 1 << 20)
            .Cpu(0, [.. Enumerable.Range(0, 16).Select(i => (ulong)(0x100 + i))], rip: 0xffffffff81000000, cr3: 0x1000, syscallMsrs: true)
            .Build();
        var expected = new Dictionary<string, ulong>();
        var edited = new MemoryStream();
        using (MachineState m = Read(original))
        {
            var editor = new SnapshotEditor(m);
            int i = 0;
            foreach (X86Register r in X86Registers.All.Where(r => r.Editable))
            {
                ulong value = Distinct(i++, r.Size);
                editor.SetRegister(0, r.Name.ToUpperInvariant(), value);
                expected[r.Name] = value;
            }

            Assert.Equal("hflags", Assert.Throws<InvalidEditException>(() => editor.SetRegister(0, "hflags", 1)).Target);
            Assert.Equal("st0", Assert.Throws<InvalidEditException>(() => editor.SetRegister(0, "st0", 1)).Target);
            Assert.Equal("xmm0", Assert.Throws<InvalidEditException>(() => editor.SetRegister(0, "xmm0", 1)).Target);
            editor.WriteTo(edited);
        }

        // rflags by its alias, after the loop set it by name.
        using (MachineState m = Read(edited.ToArray()))
        {
            var editor = new SnapshotEditor(m);
            editor.SetRegister(0, "eflags", 0x202);
            expected["rflags"] = 0x202;
            edited = new MemoryStream();
            editor.WriteTo(edited);
        }

        using MachineState back = Read(edited.ToArray());
        Assert.Equal(40, expected.Count);
        foreach ((string name, ulong value) in expected)
        {
            Assert.Equal((name, value), (name, X86Registers.Get(name).Get(back.Cpus[0])));
            Assert.Equal((name, value), (name, back.Cpus[0].GetRegister(name)!.Value));
        }
    }

    [Fact]
    public void EveryWritableGdbRegisterRoundTripsThroughPAndGPackets()
    {
        using var h = new GdbServerHarness(GdbServerHarness.InMemoryMachine(), new GdbServerOptions { SaveDirectory = new SaveDirectory(_dir, false, null) });
        using GdbTestClient c = h.Connect();
        var writable = X86Registers.Gdb.Where(r => r.Editable).ToList();
        Assert.Equal(32, writable.Count);

        // P, register by register, on vCPU 0 (thread 1).
        Assert.Equal("OK", c.Send("Hg1"));
        var onCpu0 = new Dictionary<X86Register, ulong>();
        foreach (X86Register r in writable)
        {
            ulong value = Distinct(r.Gdb!.Number, r.Gdb.Bits / 8);
            Assert.Equal("OK", c.Send($"P{r.Gdb.Number:x}={GdbHex(value, r.Gdb.Bits / 8)}"));
            onCpu0[r] = value;
        }

        foreach ((X86Register r, ulong value) in onCpu0)
        {
            Assert.Equal(GdbHex(value, r.Gdb!.Bits / 8), c.Send($"p{r.Gdb.Number:x}"));
        }

        // G, the whole block at once, on vCPU 1 (thread 2).
        Assert.Equal("OK", c.Send("Hg2"));
        var block = new StringBuilder(c.Send("g"));
        var onCpu1 = new Dictionary<X86Register, ulong>();
        int at = 0;
        foreach (X86Register r in X86Registers.Gdb)
        {
            int bytes = r.Gdb!.Bits / 8;
            if (r.Editable)
            {
                ulong value = Distinct(100 + r.Gdb.Number, bytes);
                block.Remove(at, bytes * 2).Insert(at, GdbHex(value, bytes));
                onCpu1[r] = value;
            }

            at += bytes * 2;
        }

        Assert.Equal("OK", c.Send("G" + block));
        Assert.Equal(block.ToString(), c.Send("g"));
        Assert.Equal("OK", c.Monitor("save s.mig"));

        using MachineState back = GdbServerHarness.FileMachine(Path.Combine(_dir, "s.mig"));
        foreach ((X86Register r, ulong value) in onCpu0)
        {
            Assert.Equal((r.Name, value), (r.Name, r.Get(back.Cpus[0])));
        }

        foreach ((X86Register r, ulong value) in onCpu1)
        {
            Assert.Equal((r.Name, value), (r.Name, r.Get(back.Cpus[1])));
        }
    }

    [Fact]
    public void PrstatusPutsEveryRegisterAtItsUserRegsOffsetAndReadsBack()
    {
        var cpu = new X86CpuState { Index = 3 };
        FillDistinct(cpu);
        ElfNote note = X86CoreNotes.Prstatus(cpu);
        for (int q = 0; q < s_userRegs.Length; q++)
        {
            ulong at = BinaryPrimitives.ReadUInt64LittleEndian(note.Descriptor.AsSpan(X86CoreNotes.PrstatusRegsOffset + (q * 8)));
            ulong expected = s_userRegs[q] == "orig_rax" ? 0 : X86Registers.Get(s_userRegs[q]).Get(cpu);
            Assert.Equal((s_userRegs[q], expected), (s_userRegs[q], at));
        }

        var back = new X86CpuState();
        X86CoreNotes.ReadPrstatus(note.Descriptor, back);
        Assert.Equal(3, back.Index);
        foreach (string name in s_userRegs.Where(n => n != "orig_rax"))
        {
            X86Register r = X86Registers.Get(name);
            Assert.Equal((name, r.Get(cpu)), (name, r.Get(back)));
        }
    }

    [Fact]
    public void TargetDescriptionIsTheOneGdbSawBeforeTheTable()
    {
        // SHA-256 of target.xml as X86TargetDescription built it by hand (commit 50fb645); gdb caches nothing, but a
        // changed number or type would shift every register gdb shows after it.
        Assert.Equal(
            "ab5e4e7f98e42341826c3ae9c52eafbfc7a30c223d057b8a8343c777c0bc1b49",
            Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(X86TargetDescription.Xml))));
        Assert.Equal(65, X86TargetDescription.Registers.Count);
    }

    private static MachineState Machine() => Read(new StreamBuilder().Block("pc.ram", 1 << 20)
        .Cpu(0, [.. Enumerable.Range(0, 16).Select(i => (ulong)(0x100 + i))], rip: 0xffffffff81000000, cr3: 0x1000)
        .Build());

    private static MachineState Read(byte[] stream) => MigrationMachineReader.Read(new MemorySource(stream), "synthetic");

    /// <summary>Gives every register the model keeps a value no other register has; returns them by name.</summary>
    private static Dictionary<string, ulong> FillDistinct(X86CpuState cpu)
    {
        var values = new Dictionary<string, ulong>();
        int i = 0;
        foreach (X86Register r in X86Registers.All)
        {
            if (!r.InModel)
            {
                continue;
            }

            if (r.Size > 8)
            {
                RandomNumberGenerator.Fill(cpu.Xmm);
                continue;
            }

            ulong v = Distinct(i++, r.Size);
            r.Set(cpu, v);
            values[r.Name] = v;
        }

        return values;
    }

    /// <summary>A value that fits <paramref name="size"/> bytes, different for each <paramref name="i"/> below 256, and never 0.</summary>
    private static ulong Distinct(int i, int size) => size switch
    {
        2 => 0x0100UL + (ulong)i,
        4 => 0x0101_0000UL + ((ulong)i << 8) + 1,
        _ => 0xa5a5_0000_0000_0000UL + ((ulong)i << 20) + (ulong)i + 1,
    };

    private static string GdbHex(ulong value, int size)
    {
        byte[] b = new byte[size];
        var tmp = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(tmp, value);
        tmp.AsSpan(0, Math.Min(8, size)).CopyTo(b);
        return Convert.ToHexStringLower(b);
    }
}
