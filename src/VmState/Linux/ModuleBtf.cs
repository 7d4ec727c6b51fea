using VmState.IO;
using VmState.Linux.Btf;

namespace VmState.Linux;

/// <summary>The BTF of one loaded module: split BTF whose ids continue vmlinux's (the guest's /sys/kernel/btf/NAME).</summary>
/// <param name="Name">The module's name (<c>btf->name</c>).</param>
/// <param name="BtfAddress">Address of the kernel's <c>struct btf</c>.</param>
/// <param name="Size">Size of the raw blob (<c>btf->data_size</c>).</param>
/// <param name="Types">The module's types on top of vmlinux's.</param>
public sealed record ModuleBtf(string Name, ulong BtfAddress, int Size, BtfTypes Types);

/// <summary>
/// Module BTF read from guest memory: the <c>btf_modules</c> list (<c>kernel/bpf/btf.c</c>, CONFIG_DEBUG_INFO_BTF_MODULES)
/// links a <c>struct btf_module</c> per loaded module whose <c>btf->data</c> holds the raw split-BTF blob.
/// </summary>
public static class ModuleBtfList
{
    private const int MaxModuleBtf = 64 << 20;

    /// <summary>Every module's BTF, in list order (most recently loaded last).</summary>
    /// <exception cref="KernelDataException">No <c>btf_modules</c> (a kernel without module BTF), or a corrupt entry.</exception>
    public static IReadOnlyList<ModuleBtf> Read(LinuxKernel kernel)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        if (!kernel.Symbols.TryGetAddress("btf_modules", out _))
        {
            throw new KernelDataException("module BTF", "kallsyms has no 'btf_modules': the kernel was built without CONFIG_DEBUG_INFO_BTF_MODULES");
        }

        var list = new List<ModuleBtf>();
        foreach (KernelObject entry in kernel.ListForEachEntry(kernel.Object("btf_modules"), "struct btf_module", "list", maxEntries: 65536))
        {
            KernelObject btf = entry.Member("btf");
            string name = btf.Member("name").ReadString();
            uint size = (uint)btf.Member("data_size").ToUInt64();
            if (size is 0 or > MaxModuleBtf)
            {
                throw new KernelDataException(btf.ToUInt64(), $"BTF of module {name}", $"data_size {size} is outside 1..{MaxModuleBtf}");
            }

            byte[] blob = new byte[size];
            kernel.ReadExactly(btf.Member("data").ToUInt64(), blob, $"BTF of module {name} (btf->data)");
            BtfTypes types;
            try
            {
                types = BtfTypes.Parse(blob, kernel.Types);
            }
            catch (VmStateFormatException e)
            {
                throw new KernelDataException(btf.ToUInt64(), $"BTF of module {name}", e.Message, e);
            }

            uint startId = (uint)btf.Member("start_id").ToUInt64();
            if (startId != (uint)types.FirstId)
            {
                throw new KernelDataException(btf.ToUInt64(), $"BTF of module {name}", $"start_id {startId} does not follow vmlinux's {types.FirstId - 1} types");
            }

            list.Add(new ModuleBtf(name, btf.ToUInt64(), (int)size, types));
        }

        return list;
    }
}
