namespace VmState.Arch.Arm64;

/// <summary>One translation-table descriptor visited by an AArch64 stage 1 walk (4 KiB granule).</summary>
/// <param name="Level">Lookup level, 0–3.</param>
/// <param name="Address">Guest-physical address of the descriptor.</param>
/// <param name="Value">The descriptor (0 when it could not be read).</param>
public readonly record struct Arm64PagingEntry(int Level, ulong Address, ulong Value)
{
    /// <summary>Valid bit (bit 0).</summary>
    public bool Valid => (Value & 1) != 0;

    /// <summary>True for a table descriptor (levels 0–2, bits 1:0 = 11).</summary>
    public bool IsTable => Level < 3 && (Value & 3) == 3;

    /// <summary>True for a block descriptor (levels 1–2, bits 1:0 = 01).</summary>
    public bool IsBlock => Level < 3 && (Value & 3) == 1;

    /// <summary>True for a page descriptor (level 3, bits 1:0 = 11).</summary>
    public bool IsPage => Level == 3 && (Value & 3) == 3;

    /// <summary>AP[1] (bit 6) of a block or page: EL0 may access it.</summary>
    public bool User => !IsTable && (Value & (1UL << 6)) != 0;

    /// <summary>AP[2] (bit 7) of a block or page: read-only.</summary>
    public bool ReadOnly => !IsTable && (Value & (1UL << 7)) != 0;

    /// <summary>Access flag (bit 10) of a block or page.</summary>
    public bool Accessed => !IsTable && (Value & (1UL << 10)) != 0;

    /// <summary>PXN (bit 53) of a block or page, PXNTable (bit 59) of a table.</summary>
    public bool PrivilegedExecuteNever => (Value & (1UL << (IsTable ? 59 : 53))) != 0;

    /// <summary>UXN (bit 54) of a block or page, UXNTable (bit 60) of a table.</summary>
    public bool UserExecuteNever => (Value & (1UL << (IsTable ? 60 : 54))) != 0;

    /// <summary>What the descriptor is: "table", "block", "page" or "invalid".</summary>
    public string Kind => !Valid ? "invalid" : IsTable ? "table" : IsBlock ? "block" : IsPage ? "page" : "invalid";
}
