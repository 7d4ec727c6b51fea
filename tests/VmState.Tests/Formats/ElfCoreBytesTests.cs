using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Microsoft.Win32.SafeHandles;
using VmState.Arch.X86;
using VmState.Formats.Elf;
using VmState.Linux;
using VmState.Machine;
using VmState.Memory;
using VmState.Tests.Linux;
using VmState.Tests.Support;

namespace VmState.Tests.Formats;

/// <summary>
/// The bytes of machine and process cores written from fixed synthetic inputs, pinned as SHA-256 digests taken with
/// the writers as they were before they shared <see cref="ElfCoreBuilder"/> (commit 978e034): the shared builder
/// must not change one byte of either kind of core, including the PN_XNUM layout the golden CLI test never reaches.
/// </summary>
public sealed class ElfCoreBytesTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-elfbytes-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static X86CpuState Cpu(int index)
    {
        var c = new X86CpuState { Index = index, Rip = 0xffffffff81000000 + (ulong)index, Rflags = 0x246, Cr0 = 0x80050033, Cr3 = 0x1000 * (ulong)(index + 1), Cr4 = 0x3006f0, KernelGsBase = 0xffff888000001000 };
        for (int i = 0; i < 16; i++)
        {
            c.Regs[i] = (ulong)((index * 100) + i);
        }

        for (int i = 0; i < 6; i++)
        {
            c.Segments[i] = new X86Segment((uint)(8 * i), (ulong)i << 20, 0xfffff, 0xa09b00);
        }

        return c;
    }

    private static string Digest(string path)
    {
        using FileStream f = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(f));
    }

    [Fact]
    public void AMachineCoreWithNotesAliasesAndAZeroChunkHasTheBytesItHadBefore()
    {
        // 12 MiB at 1 MiB whose second 4 MiB chunk is all zero (a hole), a low range, a range above 4 GiB.
        MemoryRange[] ranges = [new(0, 0xA0000, "low"), new(0x100000, 12 << 20, "ram"), new(0x1_0000_0000, 0x3000, "high")];
        static byte Content(ulong a) => a is >= 0x500000 and < 0x900000 ? (byte)0 : (byte)((a >> 12) ^ a ^ 0x5a);
        var machine = new MachineState(new MachineOrigin(MachineOriginKind.RawImage, "synthetic", "test"), "pc-i440fx-7.2", new SyntheticMemory(ranges, Content), [Cpu(0), Cpu(1), Cpu(2)], [], [], [], null);
        VirtualMapping[] aliases =
        [
            new(0xffffffff81000000, 0x101000, 0x2000, false, false, false),
            new(0xffff888000000000, 0x9F000, 0x3000, true, false, true), // crosses the hole at 0xA0000
            new(0xffff888100000000, 0x1_0000_1000, 0x1000, true, false, true),
        ];
        string path = Path.Combine(_dir, "machine.elf");
        ElfCoreWriter.Write(machine, path, ElfCoreTests.VmcoreinfoNote("OSRELEASE=6.1.0-bytes\nPAGESIZE=4096\n"), aliases);
        // Re-pinned once on purpose (issue 11): the kernel-virtual PT_LOADs now carry p_paddr = p_vaddr and come in
        // ascending p_vaddr (which reorders this test's three); the data and the notes are unchanged.
        Assert.Equal("c97feb0448435e6920e38330bfbedb5ddf748c3fc9dc2a58327344a71d16a432", Digest(path));

        // The all-zero 4 MiB chunk is a hole, not written zeroes: the next data after its start is where it ends.
        byte[] file = File.ReadAllBytes(path);
        long ram = (long)BinaryPrimitives.ReadUInt64LittleEndian(file.AsSpan(64 + (56 * 2) + 8));
        Assert.Equal(ram + (8 << 20), NextData(path, ram + (4 << 20)));
        Assert.Equal(ram, NextData(path, ram));
    }

    /// <summary>lseek(SEEK_DATA): the first offset at or after <paramref name="offset"/> that holds data.</summary>
    internal static long NextData(string path, long offset)
    {
        using SafeFileHandle h = File.OpenHandle(path);
        long at = LSeek((int)h.DangerousGetHandle(), offset, 3);
        Assert.True(at >= 0, $"lseek(SEEK_DATA) failed: errno {Marshal.GetLastPInvokeError()}");
        return at;
    }

    [DllImport("libc", EntryPoint = "lseek", SetLastError = true)]
    private static extern long LSeek(int fd, long offset, int whence);

    [Theory]
    [InlineData(65_533, "c2914f2b823ec854f483356053b49672726ff7d518177acc8effdf2a086786dc")] // 65,534 program headers: e_phnum holds them
    [InlineData(65_534, "97fcc1593942d4f2edbf6dde9adae78e8d5c24dfae9a8751b2c799f50c7ca8d0")] // 65,535 = PN_XNUM: the count moves to section header 0
    public void MachineCoresAtTheProgramHeaderLimitHaveTheBytesTheyHadBefore(int count, string digest)
    {
        var ranges = new MemoryRange[count];
        for (int i = 0; i < ranges.Length; i++)
        {
            ranges[i] = new MemoryRange((ulong)i * 0x1000, 0x10, "p");
        }

        var machine = new MachineState(new MachineOrigin(MachineOriginKind.RawImage, "synthetic", "test"), null, new SyntheticMemory(ranges, a => (byte)((a >> 12) + a)), [Cpu(0)], [], [], [], null);
        string path = Path.Combine(_dir, "many.elf");
        ElfCoreWriter.Write(machine, path, null);
        Assert.Equal(digest, Digest(path));
    }

    [Fact]
    public void AProcessCoreHasTheBytesItHadBefore()
    {
        var linux = new SyntheticLinux();
        MachineState machine = linux.Machine;
        (LinuxKernel k, ulong mm, _) = MemoryMapsTests.WithVmas(linux, machine);
        X86CpuState cpu = machine.Cpus[1];
        cpu.Segments[X86CpuState.Cs] = new X86Segment(0x33, 0, 0xffffffff, 0xa0fb00);
        cpu.Segments[X86CpuState.Ss] = new X86Segment(0x2b, 0, 0xffffffff, 0xc0f300);
        cpu.Rip = 0x401234;
        cpu.Regs[4] = 0x7ffd0ff0;
        ulong[] auxv = [6, 4096, 9, 0x401000, 0, 0];
        for (int i = 0; i < auxv.Length; i++)
        {
            linux.WriteU64(mm + SyntheticLinux.MmSavedAuxv + (8 * (ulong)i), auxv[i]);
        }

        string path = Path.Combine(_dir, "init.core");
        ProcessCore.Write(k, 1, path);
        Assert.Equal("c95ad62ded8900bb290fa7f53a072bcb03138d1a94a4ae9d2a45c496d80779e6", Digest(path));
    }
}
