namespace OnnxLora.Core.Peft;

/// <summary>The PEFT adapter methods this project reads and writes (<c>peft_type</c> in adapter_config.json).</summary>
public enum PeftType
{
    /// <summary>"LORA": ΔW = s·B·A (also rsLoRA, DoRA, embedding LoRA).</summary>
    Lora,

    /// <summary>"LOHA": ΔW = (w1a·w1b) ⊙ (w2a·w2b)·alpha/r.</summary>
    LoHa,

    /// <summary>"LOKR": ΔW = kron(w1, w2)·alpha/r.</summary>
    LoKr,
}

/// <summary>How the adapter's own bias handling was configured (<c>bias</c>).</summary>
public enum PeftBias
{
    /// <summary>"none": no bias is trained or saved.</summary>
    None,

    /// <summary>"all": every bias of the model is trained and saved.</summary>
    All,

    /// <summary>"lora_only": the biases of adapted modules are trained and saved.</summary>
    LoraOnly,
}

/// <summary>JSON spellings of <see cref="PeftType"/> and <see cref="PeftBias"/>.</summary>
public static class PeftNames
{
    public static string ToJsonName(this PeftType type) => type switch
    {
        PeftType.Lora => "LORA",
        PeftType.LoHa => "LOHA",
        PeftType.LoKr => "LOKR",
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, null),
    };

    public static bool TryParsePeftType(string name, out PeftType type)
    {
        switch (name)
        {
            case "LORA": type = PeftType.Lora; return true;
            case "LOHA": type = PeftType.LoHa; return true;
            case "LOKR": type = PeftType.LoKr; return true;
            default: type = default; return false;
        }
    }

    public static string ToJsonName(this PeftBias bias) => bias switch
    {
        PeftBias.None => "none",
        PeftBias.All => "all",
        PeftBias.LoraOnly => "lora_only",
        _ => throw new ArgumentOutOfRangeException(nameof(bias), bias, null),
    };

    public static bool TryParseBias(string name, out PeftBias bias)
    {
        switch (name)
        {
            case "none": bias = PeftBias.None; return true;
            case "all": bias = PeftBias.All; return true;
            case "lora_only": bias = PeftBias.LoraOnly; return true;
            default: bias = default; return false;
        }
    }
}
