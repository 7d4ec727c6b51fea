using Iced.Intel;
using VmState.Arch.X86;
using VmState.Linux;
using VmState.Machine;

namespace VmState.Cli.Web;

/// <summary>
/// One memory read of the Memory and process pages and of <c>/api/s/N/mem</c>: guest-physical, a vCPU's virtual
/// addresses, or a process's (its page tables), with how far it got and why it stopped.
/// </summary>
internal sealed record WebMemoryRead(bool Physical, int? Pid, int Cpu, ulong Address, int Requested, byte[] Data, string? Stopped, AddressSpace? Space)
{
    /// <summary>The most bytes disassembled beside a hexdump (the first part of a longer read).</summary>
    public const int MaxDisassembly = 4096;

    /// <summary>Reads <paramref name="length"/> bytes at <paramref name="address"/>.</summary>
    public static WebMemoryRead Read(Vm vm, bool physical, int? pid, int cpu, ulong address, int length)
    {
        byte[] buffer = new byte[length];
        if (physical)
        {
            int got = vm.Machine.Memory.Read(address, buffer);
            return new WebMemoryRead(true, null, cpu, address, length, buffer[..got], got < length ? $"guest-physical 0x{address + (ulong)got:x} is not backed by RAM" : null, null);
        }

        AddressSpace space = SpaceOf(vm, pid, cpu);
        int n = space.Read(address, buffer);
        string? stopped = null;
        if (n < length)
        {
            Translation t = space.Translate(address + (ulong)n);
            stopped = $"0x{address + (ulong)n:x} is not readable ({t.Failure ?? "its physical page is not in RAM"})";
        }

        return new WebMemoryRead(false, pid, cpu, address, length, buffer[..n], stopped, space);
    }

    /// <summary>The address space of process <paramref name="pid"/>, else of vCPU <paramref name="cpu"/>.</summary>
    public static AddressSpace SpaceOf(Vm vm, int? pid, int cpu)
    {
        if (pid is int p)
        {
            return vm.Linux.ProcessAddressSpace(p);
        }

        if (cpu >= vm.Machine.Cpus.Count)
        {
            throw new WebRequestException(400, $"cpu {cpu}: the VM has vCPUs 0-{vm.Machine.Cpus.Count - 1}");
        }

        return CpuAddressSpaces.Of(vm.Machine, cpu);
    }

    /// <summary>One disassembled instruction: address, bytes, text, and the kernel symbol that starts there.</summary>
    public sealed record Instruction(ulong Address, string Bytes, string Text, string? Label);

    /// <summary>
    /// The first <see cref="MaxDisassembly"/> bytes as x86-64 (Iced, GAS syntax), branch targets and instruction
    /// starts named after kernel symbols when <paramref name="kernel"/> is known and the addresses are virtual.
    /// </summary>
    public IReadOnlyList<Instruction> Disassemble(LinuxKernel? kernel)
    {
        byte[] code = Data.Length > MaxDisassembly ? Data[..MaxDisassembly] : Data;
        var decoder = Decoder.Create(64, new ByteArrayCodeReader(code), Address);
        Kallsyms? symbols = Physical ? null : kernel?.Symbols;
        var formatter = new GasFormatter(symbols is null ? null : new KernelSymbolResolver(symbols));
        var output = new StringOutput();
        var list = new List<Instruction>();
        ulong end = Address + (ulong)code.Length;
        while (decoder.IP < end)
        {
            ulong ip = decoder.IP;
            decoder.Decode(out Iced.Intel.Instruction instruction);
            if (decoder.LastError == DecoderError.NoMoreBytes)
            {
                break;
            }

            formatter.Format(instruction, output);
            int start = (int)(ip - Address);
            string? label = symbols is not null && symbols.TrySymbolize(ip, out KernelSymbol s, out ulong off) && off == 0 ? s.Name : null;
            list.Add(new Instruction(ip, Convert.ToHexStringLower(code, start, Math.Min(instruction.Length, code.Length - start)), output.ToStringAndReset(), label));
        }

        return list;
    }

    /// <summary>The kernel symbol (name+offset) at <paramref name="address"/>, or null.</summary>
    public static string? SymbolAt(LinuxKernel? kernel, ulong address) =>
        kernel is not null && kernel.Symbols.TrySymbolize(address, out KernelSymbol s, out ulong off)
            ? off == 0 ? s.Name : $"{s.Name}+0x{off:x}"
            : null;

    /// <summary>Names branch and memory targets after kernel symbols.</summary>
    private sealed class KernelSymbolResolver(Kallsyms symbols) : ISymbolResolver
    {
        public bool TryGetSymbol(in Iced.Intel.Instruction instruction, int operand, int instructionOperand, ulong address, int addressSize, out SymbolResult symbol)
        {
            if (address >= 0xffff_8000_0000_0000 && symbols.TrySymbolize(address, out KernelSymbol s, out ulong off))
            {
                symbol = new SymbolResult(address - off, s.Name);
                return true;
            }

            symbol = default;
            return false;
        }
    }
}
