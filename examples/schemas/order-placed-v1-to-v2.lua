-- OrderPlaced 1 -> 2: every version-1 order was placed in euros.
return function(data, e)
  data.currency = "EUR"
  return data
end
