namespace VmState.Linux;

/// <summary>
/// The kernel's doubly linked list helpers, named after their macros in Linux <c>include/linux/list.h</c> and
/// <c>include/linux/container_of.h</c> (as drgn's <c>drgn/helpers/linux/list.py</c> does). Walks are bounded and
/// detect revisits, so a corrupt list ends with a <see cref="KernelDataException"/> instead of a hang.
/// </summary>
public static class KernelList
{
    /// <summary>Default cap on entries walked (far above any real list: pid_max is at most 4M).</summary>
    public const int DefaultMaxEntries = 1 << 22;

    /// <summary>
    /// <c>list_for_each</c>: the addresses of the <c>struct list_head</c> nodes after <paramref name="head"/>, until
    /// the walk returns to it. <c>next</c> is the first member of <c>struct list_head</c> (<c>include/linux/types.h</c>).
    /// </summary>
    /// <exception cref="KernelDataException">A NULL or unreadable next pointer, a loop that misses the head, or more than <paramref name="maxEntries"/> entries.</exception>
    public static IEnumerable<ulong> ListForEach(this LinuxKernel kernel, ulong head, string what = "list", int maxEntries = DefaultMaxEntries)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        // Brent's cycle detection: a node saved at every power-of-two step; meeting it again means a loop (in a
        // well-formed list every node is distinct until the head). Constant memory, found within twice the loop length.
        ulong saved = head;
        int power = 1;
        int steps = 0;
        ulong node = head;
        for (int count = 0; ; count++)
        {
            if (!kernel.TryReadU64(node, out ulong next))
            {
                throw new KernelDataException(node, what, count == 0 ? "the list head is not mapped" : $"entry {count}'s list_head is not mapped (a wild next pointer)");
            }

            if (next == head)
            {
                yield break;
            }

            if (next == 0)
            {
                throw new KernelDataException(node, what, $"entry {count} has a NULL next pointer");
            }

            if (next == saved)
            {
                throw new KernelDataException(next, what, $"loops: node 0x{next:x} is reached again after {count + 1} entries without returning to the head 0x{head:x}");
            }

            if (++steps == power)
            {
                saved = next;
                power <<= 1;
                steps = 0;
            }

            if (count >= maxEntries)
            {
                throw new KernelDataException(head, what, $"more than {maxEntries} entries");
            }

            yield return next;
            node = next;
        }
    }

    /// <summary>
    /// <c>list_for_each_entry</c>: the structures of type <paramref name="type"/> linked through their
    /// <paramref name="member"/> list_head, starting from <paramref name="head"/> (a <c>struct list_head</c> object).
    /// </summary>
    /// <exception cref="KernelDataException">See <see cref="ListForEach"/>.</exception>
    public static IEnumerable<KernelObject> ListForEachEntry(this LinuxKernel kernel, KernelObject head, string type, string member, int maxEntries = DefaultMaxEntries)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(head);
        int typeId = kernel.Types.FindType(type);
        ulong offset = kernel.MemberOf(typeId, member).ByteOffset;
        foreach (ulong node in kernel.ListForEach(head.Address, $"list {head.Expression} ({type}.{member})", maxEntries))
        {
            yield return kernel.ObjectAt(node - offset, typeId);
        }
    }

    /// <summary><c>container_of</c>: the <paramref name="type"/> whose <paramref name="member"/> is at <paramref name="pointer"/>.</summary>
    /// <exception cref="VmStateNotFoundException">No such type (<see cref="VmStateObjectKind.Type"/>).</exception>
    /// <exception cref="KernelDataException">No such member.</exception>
    public static KernelObject ContainerOf(this LinuxKernel kernel, ulong pointer, string type, string member)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        int typeId = kernel.Types.FindType(type);
        return kernel.ObjectAt(pointer - kernel.MemberOf(typeId, member).ByteOffset, typeId);
    }

    /// <summary><c>list_empty</c>: the head's next pointer points back at the head.</summary>
    /// <exception cref="KernelDataException">The head is not mapped.</exception>
    public static bool ListEmpty(this LinuxKernel kernel, KernelObject head)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(head);
        return kernel.ReadU64(head.Address, head.Expression) == head.Address;
    }
}
