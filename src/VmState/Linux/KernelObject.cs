using System.Buffers.Binary;
using System.Text;
using VmState.Linux.Btf;

namespace VmState.Linux;

/// <summary>
/// A typed value in the guest kernel, in the spirit of drgn's <c>Object</c>: either a reference (an address and a
/// BTF type) or a plain value (e.g. a pointer obtained with <see cref="AddressOf"/>). Member access by name goes
/// through anonymous members and, like drgn, through a pointer to a struct; reads happen only when a value is asked
/// for. Unmapped memory surfaces as <see cref="KernelDataException"/> naming the expression read.
/// </summary>
public sealed class KernelObject
{
    private readonly ulong _value;

    private KernelObject(LinuxKernel kernel, int typeId, bool isReference, ulong addressOrValue, uint bitOffset, uint bitSize, string expression)
    {
        Kernel = kernel;
        TypeId = typeId;
        IsReference = isReference;
        Address = isReference ? addressOrValue : 0;
        _value = isReference ? 0 : addressOrValue;
        BitOffset = bitOffset;
        BitSize = bitSize;
        Expression = expression;
    }

    /// <summary>The kernel the object lives in.</summary>
    public LinuxKernel Kernel { get; }

    /// <summary>BTF type id of the object.</summary>
    public int TypeId { get; }

    /// <summary>The BTF type.</summary>
    public BtfType Type => Kernel.Types.Get(TypeId);

    /// <summary>The C spelling of the type.</summary>
    public string TypeName => Kernel.Types.TypeName(TypeId);

    /// <summary>True for an object in memory (it has an <see cref="Address"/>); false for a computed value.</summary>
    public bool IsReference { get; }

    /// <summary>Address of the object (of the byte holding the first bit, for a bitfield); 0 for a value.</summary>
    public ulong Address { get; }

    /// <summary>Bit offset inside the byte at <see cref="Address"/>, for a bitfield.</summary>
    public uint BitOffset { get; }

    /// <summary>Width in bits for a bitfield, else 0.</summary>
    public uint BitSize { get; }

    /// <summary>How the object was reached (<c>init_task.tasks.next</c>), for messages.</summary>
    public string Expression { get; }

    /// <summary>Size of the object's type in bytes.</summary>
    public ulong Size => Kernel.Types.SizeOf(TypeId);

    /// <summary>
    /// The member at <paramref name="path"/> (dotted, with [N] indices; anonymous members searched through). On a
    /// pointer to a struct or union, the pointer is followed first, as drgn does.
    /// </summary>
    /// <exception cref="KernelDataException">No such member, or the pointer cannot be read.</exception>
    public KernelObject Member(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        KernelObject container = this;
        BtfType t = Kernel.Types.Resolve(TypeId);
        if (t.Kind == BtfKind.Pointer)
        {
            container = Deref();
        }
        else if (!IsReference)
        {
            throw new KernelDataException("kernel object", $"{Expression} is a value of type {TypeName}; members need an object in memory");
        }

        BtfMemberLocation loc = Kernel.MemberOf(container.TypeId, path);
        string sep = ReferenceEquals(container, this) ? "." : "->";
        return new KernelObject(Kernel, loc.TypeId, true, container.Address + loc.ByteOffset, (uint)(loc.BitOffset % 8), loc.BitfieldSize, $"{Expression}{sep}{path}");
    }

    /// <summary>The object a pointer points to.</summary>
    /// <exception cref="KernelDataException">Not a pointer, a NULL pointer, or unreadable.</exception>
    public KernelObject Deref()
    {
        BtfType t = Kernel.Types.Resolve(TypeId);
        if (t.Kind != BtfKind.Pointer)
        {
            throw new KernelDataException("kernel object", $"{Expression} has type {TypeName}, not a pointer");
        }

        ulong p = ToUInt64();
        if (p == 0)
        {
            throw new KernelDataException("kernel object", $"{Expression} is a NULL pointer");
        }

        return At(Kernel, t.ReferencedType, p, $"*{Expression}");
    }

    /// <summary>Element <paramref name="index"/> of an array, or <c>ptr[index]</c> of a pointer.</summary>
    /// <exception cref="KernelDataException">Not an array or pointer, or the index is past a fixed-length array.</exception>
    public KernelObject Index(long index)
    {
        BtfType t = Kernel.Types.Resolve(TypeId);
        if (t.Kind == BtfKind.Array && IsReference)
        {
            BtfArrayInfo a = t.ArrayInfo!.Value;
            if (a.Length != 0 && (index < 0 || (ulong)index >= a.Length))
            {
                throw new KernelDataException(Address, Expression, $"index {index} is outside the {a.Length} elements");
            }

            return At(Kernel, a.ElementType, Address + (ulong)(index * (long)Kernel.Types.SizeOf(a.ElementType)), $"{Expression}[{index}]");
        }

        if (t.Kind == BtfKind.Pointer)
        {
            return At(Kernel, t.ReferencedType, ToUInt64() + (ulong)(index * (long)Kernel.Types.SizeOf(t.ReferencedType)), $"{Expression}[{index}]");
        }

        throw new KernelDataException("kernel object", $"{Expression} has type {TypeName}, which cannot be indexed");
    }

    /// <summary>A pointer value to this object (<c>&amp;obj</c>).</summary>
    public KernelObject AddressOf()
    {
        if (!IsReference || BitSize != 0)
        {
            throw new KernelDataException("kernel object", $"cannot take the address of {Expression}");
        }

        return new KernelObject(Kernel, Kernel.Types.PointerTo(TypeId), false, Address, 0, 0, $"&{Expression}");
    }

    /// <summary>
    /// The same memory seen as <paramref name="typeName"/> (reference), or the same value converted (pointer or integer value).
    /// </summary>
    /// <exception cref="VmStateNotFoundException">No such type (<see cref="VmStateObjectKind.Type"/>).</exception>
    public KernelObject Cast(string typeName)
    {
        int id = Kernel.Types.FindType(typeName);
        return IsReference
            ? new KernelObject(Kernel, id, true, Address, BitOffset, BitSize, $"(({typeName}){Expression})")
            : new KernelObject(Kernel, id, false, _value, 0, 0, $"(({typeName}){Expression})");
    }

    /// <summary>A pointer value of type <paramref name="pointerTypeId"/> holding <paramref name="value"/>.</summary>
    public static KernelObject Pointer(LinuxKernel kernel, int pointerTypeId, ulong value)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        return new KernelObject(kernel, pointerTypeId, false, value, 0, 0, $"({kernel.Types.TypeName(pointerTypeId)})0x{value:x}");
    }

    /// <summary>An object of type <paramref name="typeId"/> in memory at <paramref name="address"/>.</summary>
    internal static KernelObject At(LinuxKernel kernel, int typeId, ulong address, string? expression = null) =>
        new(kernel, typeId, true, address, 0, 0, expression ?? $"*({kernel.Types.TypeName(typeId)} *)0x{address:x}");

    /// <summary>True for a NULL pointer.</summary>
    public bool IsNull => Kernel.Types.Resolve(TypeId).Kind == BtfKind.Pointer && ToUInt64() == 0;

    /// <summary>The value as an unsigned integer (integers, enums, bools, pointers; bitfields extracted).</summary>
    /// <exception cref="KernelDataException">Unreadable, or not a scalar.</exception>
    public ulong ToUInt64() => Scalar(out _);

    /// <summary>The value as a signed integer, sign-extended for signed types and bitfields.</summary>
    /// <exception cref="KernelDataException">Unreadable, or not a scalar.</exception>
    public long ToInt64()
    {
        ulong v = Scalar(out int bits);
        BtfType t = Kernel.Types.Resolve(TypeId);
        bool signed = t.Kind switch
        {
            BtfKind.Int => t.IntEncoding!.Value.Signed,
            BtfKind.Enum or BtfKind.Enum64 => t.IsSignedEnum,
            _ => false,
        };
        if (signed && bits < 64)
        {
            int shift = 64 - bits;
            return (long)(v << shift) >> shift;
        }

        return (long)v;
    }

    /// <summary>True when the value is non-zero.</summary>
    public bool ToBool() => ToUInt64() != 0;

    /// <summary>
    /// A string: a char array read up to its length (or <paramref name="maxLength"/>) and its first NUL, or the
    /// string a <c>char *</c> points to. UTF-8, invalid bytes replaced.
    /// </summary>
    /// <exception cref="KernelDataException">Not a char array or pointer, or unreadable.</exception>
    public string ReadString(int maxLength = 4096)
    {
        BtfType t = Kernel.Types.Resolve(TypeId);
        if (t.Kind == BtfKind.Array && IsReference)
        {
            uint len = t.ArrayInfo!.Value.Length;
            int n = len == 0 ? maxLength : (int)Math.Min(len, (uint)maxLength);
            return Kernel.ReadCString(Address, n, Expression);
        }

        if (t.Kind == BtfKind.Pointer)
        {
            ulong p = ToUInt64();
            if (p == 0)
            {
                throw new KernelDataException("kernel object", $"{Expression} is a NULL pointer");
            }

            return Kernel.ReadCString(p, maxLength, $"*{Expression}");
        }

        throw new KernelDataException("kernel object", $"{Expression} has type {TypeName}, not a char array or pointer");
    }

    /// <summary>The object's bytes.</summary>
    /// <exception cref="KernelDataException">Unreadable, or a value object.</exception>
    public byte[] ReadBytes()
    {
        if (!IsReference)
        {
            byte[] b = new byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(b, _value);
            return b;
        }

        ulong size = Size;
        if (size > 1 << 26)
        {
            throw new KernelDataException(Address, Expression, $"{size} bytes is too large to read at once");
        }

        byte[] data = new byte[size];
        Kernel.ReadExactly(Address, data, Expression);
        return data;
    }

    /// <inheritdoc />
    public override string ToString()
    {
        var sb = new StringBuilder();
        sb.Append('(').Append(TypeName).Append(')');
        BtfType t = Kernel.Types.Resolve(TypeId);
        try
        {
            if (t.Kind is BtfKind.Pointer)
            {
                sb.Append("0x").Append(ToUInt64().ToString("x", System.Globalization.CultureInfo.InvariantCulture));
            }
            else if (t.Kind is BtfKind.Int or BtfKind.Enum or BtfKind.Enum64)
            {
                sb.Append(ToInt64().ToString(System.Globalization.CultureInfo.InvariantCulture));
            }
            else
            {
                sb.Append("@0x").Append(Address.ToString("x", System.Globalization.CultureInfo.InvariantCulture));
            }
        }
        catch (KernelDataException)
        {
            sb.Append("<unreadable at 0x").Append(Address.ToString("x", System.Globalization.CultureInfo.InvariantCulture)).Append('>');
        }

        return sb.ToString();
    }

    private ulong Scalar(out int bits)
    {
        BtfType t = Kernel.Types.Resolve(TypeId);
        ulong size = t.Kind switch
        {
            BtfKind.Int or BtfKind.Enum or BtfKind.Enum64 => t.Size,
            BtfKind.Pointer => 8,
            _ => throw new KernelDataException("kernel object", $"{Expression} has type {TypeName}, not an integer, enum or pointer"),
        };
        if (!IsReference)
        {
            bits = 64;
            return _value;
        }

        if (BitSize != 0)
        {
            // A bitfield: BitSize bits starting BitOffset bits into the byte at Address (little-endian bit order).
            Span<byte> buf = stackalloc byte[16];
            int bytes = (int)((BitOffset + BitSize + 7) / 8);
            Kernel.ReadExactly(Address, buf[..bytes], Expression);
            UInt128 raw = BinaryPrimitives.ReadUInt128LittleEndian(buf);
            bits = (int)BitSize;
            UInt128 mask = BitSize >= 64 ? ulong.MaxValue : (UInt128)((1UL << (int)BitSize) - 1);
            return (ulong)((raw >> (int)BitOffset) & mask);
        }

        if (size is not (1 or 2 or 4 or 8))
        {
            throw new KernelDataException("kernel object", $"{Expression} is a {size}-byte integer; only 1, 2, 4 and 8 bytes are read as a number");
        }

        Span<byte> b = stackalloc byte[8];
        b.Clear();
        Kernel.ReadExactly(Address, b[..(int)size], Expression);
        bits = (int)size * 8;
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }
}
