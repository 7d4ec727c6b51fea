namespace VmState.Linux.Btf;

/// <summary>BTF type kinds, with the numbers of Linux <c>include/uapi/linux/btf.h</c> (<c>BTF_KIND_*</c>).</summary>
public enum BtfKind
{
    /// <summary>Type id 0: <c>void</c>.</summary>
    Void = 0,

    /// <summary>BTF_KIND_INT: an integer, with encoding (signed, char, bool), bit offset and bit count.</summary>
    Int = 1,

    /// <summary>BTF_KIND_PTR: a pointer to the referenced type.</summary>
    Pointer = 2,

    /// <summary>BTF_KIND_ARRAY: element type, index type and element count.</summary>
    Array = 3,

    /// <summary>BTF_KIND_STRUCT.</summary>
    Struct = 4,

    /// <summary>BTF_KIND_UNION.</summary>
    Union = 5,

    /// <summary>BTF_KIND_ENUM: 32-bit enumerators (signed when kind_flag is set, Linux 6.0+).</summary>
    Enum = 6,

    /// <summary>BTF_KIND_FWD: a forward declaration (kind_flag: 0 struct, 1 union).</summary>
    Forward = 7,

    /// <summary>BTF_KIND_TYPEDEF.</summary>
    Typedef = 8,

    /// <summary>BTF_KIND_VOLATILE.</summary>
    Volatile = 9,

    /// <summary>BTF_KIND_CONST.</summary>
    Const = 10,

    /// <summary>BTF_KIND_RESTRICT.</summary>
    Restrict = 11,

    /// <summary>BTF_KIND_FUNC: a function; vlen is the linkage, the type a FUNC_PROTO.</summary>
    Function = 12,

    /// <summary>BTF_KIND_FUNC_PROTO: return type and parameters.</summary>
    FunctionProto = 13,

    /// <summary>BTF_KIND_VAR: a variable (in the kernel only per-CPU variables have one).</summary>
    Variable = 14,

    /// <summary>BTF_KIND_DATASEC: a section's variables with offsets and sizes.</summary>
    DataSection = 15,

    /// <summary>BTF_KIND_FLOAT.</summary>
    Float = 16,

    /// <summary>BTF_KIND_DECL_TAG: an attribute on a declaration or one of its members/parameters.</summary>
    DeclTag = 17,

    /// <summary>BTF_KIND_TYPE_TAG: an attribute on a pointee type (e.g. __user, __rcu).</summary>
    TypeTag = 18,

    /// <summary>BTF_KIND_ENUM64: 64-bit enumerators.</summary>
    Enum64 = 19,
}
